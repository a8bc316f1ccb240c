"""TNEF (winmail.dat): reading it and turning it into plain MIME."""
