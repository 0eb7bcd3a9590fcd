"""Fuzz targets and the ``make fuzz`` runner (issue 8); not part of the installed package."""
