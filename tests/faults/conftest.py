"""The canary test bed (a delivering relay and a real Dovecot) for the mailbox faults."""

from tests.canary.test_canary import apps, bed  # noqa: F401 - fixtures, used by name
from tests.test_cli import daemons  # noqa: F401
