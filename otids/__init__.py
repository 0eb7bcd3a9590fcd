"""otids: a network intrusion detection system for industrial control networks.

Data flows one way: ``capture`` -> ``decode`` -> ``rules`` -> ``alerts``; ``pipeline`` wires
them together and ``cli`` is the command-line face.
"""

__version__ = "0.1.0"
