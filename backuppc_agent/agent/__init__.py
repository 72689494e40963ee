"""The supervised ssh-agent: wire protocol, probe, child process and state machine."""
