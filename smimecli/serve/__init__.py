"""``smimecli serve``: an SMTP content filter (aiosmtpd) that encrypts by rules and relays.

Only this package imports aiosmtpd. :mod:`~smimecli.serve.engine` is its one door into
the encryption library; :mod:`~smimecli.serve.protocol` and
:mod:`~smimecli.serve.handler` speak SMTP; :mod:`~smimecli.serve.relay` hands the copies
on; :mod:`~smimecli.serve.journal` records them; :mod:`~smimecli.serve.daemon` ties it
together with the worker pool and the signals.
"""
