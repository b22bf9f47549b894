"""Real servers on loopback for the tests: SMTP relays, scripted listeners, DNS, token endpoint."""
