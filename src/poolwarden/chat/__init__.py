"""Chat commands: what people type in Slack, verified, parsed and answered.

Pure on purpose: :mod:`.slack` (request signatures, payloads, escaping, the response_url
guard), :mod:`.commands` (the command syntax and the signed confirmation of destructive
actions) and :mod:`.render` (Slack messages from what :class:`~poolwarden.operate.ops.
Operations` returns). The HTTP edge is :mod:`poolwarden.api.slack`.
"""
