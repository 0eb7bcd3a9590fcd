"""Packet sources, link/IP/TCP/UDP decoding, flows and TCP reassembly.

This layer knows nothing of industrial protocols: it hands ordered byte streams (TCP) and
datagrams (UDP) upward, with the flow they belong to and the direction they travel.
"""
