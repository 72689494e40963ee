"""``install`` and ``trust``: the shipped service files, what install writes where, known_hosts."""
