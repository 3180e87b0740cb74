"""Node providers: what creates and removes the machines (or processes) that become a pool's nodes."""
