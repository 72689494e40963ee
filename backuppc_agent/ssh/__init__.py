"""OpenSSH master connections: the mux protocol, ssh options, masters, the transfer wrapper."""
