"""Servers both the tests and the benchmarks run: a real Dovecot on loopback; not in the wheel."""
