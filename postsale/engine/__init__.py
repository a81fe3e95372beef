"""The pure engine: journey programs, caps and the ``advance`` state machine.

No I/O and no clock: every function takes ``now``. ``postsale.engine.types`` holds the values
that go in and come out; storage (``postsale.store``) and ``simulate`` apply the results.
"""

from postsale.engine.advance import advance, advance_customer, message_id_for
from postsale.engine.caps import earliest_send
from postsale.engine.program import Program, program_for

__all__ = ["Program", "advance", "advance_customer", "earliest_send", "message_id_for", "program_for"]
