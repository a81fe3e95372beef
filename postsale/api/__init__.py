"""postsale's HTTP API (SPEC.md §7): ``create_app(settings)`` in ``postsale.api.app``.

One module per door: ``events`` (POST /events, DELETE /customers), ``health``, ``links``
(unsubscribe, preferences and survey pages), ``shops`` (Shopify and Stripe webhooks), and
``sendgrid_webhook`` (delivery events). ``deps`` holds what they share.
"""
