"""Joining on the web: double opt-in, the confirmation and welcome mails, preferences.

``service.SignupMixin`` is the part of the web backend behind ``/subscribe``,
``/confirm/<token>`` and ``/p/<token>``; ``mail`` builds the two
transactional mails and hands them to ``[sender]``. The data lives in the
store (``store.people``).
"""
