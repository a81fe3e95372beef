"""postsale: post-sale email journeys with guardrails the engine enforces.

The pure core (``postsale.spec.model``, ``postsale.engine``, ``postsale.durations``,
``postsale.timing``, ``postsale.sandbox``, ``postsale.events``) imports nothing of
prefect, sqlmodel, sendgrid or httpx; I/O lives at the edges (``postsale.store``,
``postsale.delivery``, ``postsale.api``, ``postsale.cli``) and in ``flows``.
"""

__version__ = "0.1.0"
