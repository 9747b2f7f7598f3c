"""inrroute: is the class signal in meta-learned SIREN weights clustered or routed?"""

__version__ = "0.1.0"
