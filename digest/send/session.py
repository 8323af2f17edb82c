"""One SMTP session and the dialogue of one transaction.

This is where smtplib and socket errors become ``SendError``: a refusal
carries its reply code and whether it is permanent; ``AfterDot`` marks a
connection lost after the final dot (the outcome is unknown);
``ConnectFailed`` a session that could not be opened; ``Fatal`` a problem
of the whole run (login refused, TLS failed, the sender address refused,
a relay that will not relay for us).
The dialogue is driven by hand (``send`` + ``getreply``) rather than
``sendmail`` so that "before" and "after" the final dot can be told apart.
"""

from __future__ import annotations

import smtplib
import ssl

from digest.config import SenderSettings
from digest.errors import SendError
from digest.models import Outgoing
from digest.send.replies import Reply, classify, relay_denied

_CRLF = b"\r\n"

#: RFC 5321 4.5.3.2.6: a server may take 10 minutes to answer the final dot
#: (content scanners do); the shorter session timeout would turn that into "unknown".
FINAL_REPLY_TIMEOUT = 600.0


class Fatal(SendError):
    """Stops the run: nothing later in it can succeed."""


class ConnectFailed(SendError):
    """No session could be opened; temporary, and fatal once retries run out."""


class AfterDot(SendError):
    """The data and the final dot went out but no reply came back."""


class Refused(SendError):
    """The server refused one transaction; ``reply`` says what it said and whose problem it is."""

    def __init__(self, message: str, reply: Reply, *, permanent: bool) -> None:
        super().__init__(message, code=reply.code, permanent=permanent)
        self.reply = reply


class FatalRefusal(Fatal, Refused):
    """A refusal that stops the run (the relay or the session will not take our mail)."""


def text_of(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def refused(stage: str, code: int, text: bytes | str) -> Refused:
    """The error for a refusal of ``stage`` (MAIL, RCPT, DATA or "message" after the dot)."""
    # A multi-line reply comes joined by newlines; an error message stays on one line.
    reply = classify(code, text_of(text))
    msg = f"{stage} refused: {code} {reply.text}".strip()
    if stage in ("MAIL", "RCPT") and relay_denied(reply.text):
        # Every recipient would get the same answer: the relay is not set up for us
        # (no login, wrong host), so failing each subscriber for good would be wrong.
        return FatalRefusal(
            f"{msg} (the server refuses to relay our mail: check sender.host, sender.username and sender.security)",
            reply,
            permanent=True,
        )
    if code == 530 or (stage == "MAIL" and code >= 500 and code != 552):
        # About the sender or the session, not this recipient: failing every
        # subscriber permanently would be wrong.
        return FatalRefusal(msg, reply, permanent=True)
    return Refused(msg, reply, permanent=code >= 500 and code != 552)


class SmtpSession:
    """One worker's SMTP session, opened lazily and reused up to ``per_connection``."""

    def __init__(
        self, settings: SenderSettings, envelope_from: bytes, local_hostname: str, tls: ssl.SSLContext
    ) -> None:
        self.settings = settings
        self.envelope_from = envelope_from
        self.local_hostname = local_hostname
        self.tls = tls
        self.client: smtplib.SMTP | None = None
        self.used = 0
        self.pipelining = False
        self.utf8 = False
        self.eightbit = False

    def ensure(self) -> smtplib.SMTP:
        if self.client is not None and self.used >= self.settings.per_connection:
            self.quit()
        if self.client is None:
            self.client = self._open()
            self.used = 0
        return self.client

    def _open(self) -> smtplib.SMTP:
        st = self.settings
        where = f"{st.host}:{st.port}"
        try:
            client: smtplib.SMTP
            if st.security == "tls":
                client = smtplib.SMTP_SSL(
                    st.host,
                    st.port,
                    local_hostname=self.local_hostname,
                    timeout=st.timeout,
                    context=self.tls,
                )
            else:
                client = smtplib.SMTP(st.host, st.port, local_hostname=self.local_hostname, timeout=st.timeout)
            try:
                client.ehlo()
                if st.security == "starttls":
                    client.starttls(context=self.tls)
                    client.ehlo()
                if st.username:
                    client.login(st.username, st.password)
            except BaseException:
                client.close()
                raise
        except smtplib.SMTPAuthenticationError as exc:
            text = text_of(exc.smtp_error)
            raise Fatal(
                f"{where}: login as {st.username!r} refused: {exc.smtp_code} {text}", code=exc.smtp_code
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise Fatal(f"{where}: {exc} (check sender.security and sender.username)") from exc
        except ssl.SSLError as exc:
            raise Fatal(f"{where}: TLS failed: {exc}") from exc
        except smtplib.SMTPResponseException as exc:
            text = text_of(exc.smtp_error)
            raise ConnectFailed(f"{where}: {exc.smtp_code} {text}", code=exc.smtp_code) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise ConnectFailed(f"cannot connect to {where}: {exc}") from exc
        self.pipelining = client.has_extn("pipelining")
        self.utf8 = client.has_extn("smtputf8")
        self.eightbit = client.has_extn("8bitmime")
        return client

    def deliver(self, msg: Outgoing) -> None:
        """One transaction; raises SendError, or ``AfterDot`` when the reply was lost."""
        client = self.ensure()
        self.used += 1
        options = b""
        try:
            rcpt = msg.recipient.encode("ascii")
        except UnicodeEncodeError:
            if not self.utf8:
                raise SendError(
                    f"{msg.recipient}: the server does not take non-ASCII addresses (no SMTPUTF8)",
                    permanent=True,
                ) from None
            rcpt = msg.recipient.encode("utf-8")
            options = b" SMTPUTF8"
        data = msg.data
        if self.eightbit and not data.isascii():
            options += b" BODY=8BITMIME"
        envelope = msg.envelope_from.encode("ascii") if msg.envelope_from else self.envelope_from
        mail = b"MAIL FROM:<" + envelope + b">" + options + _CRLF
        rcpt_cmd = b"RCPT TO:<" + rcpt + b">" + _CRLF
        try:
            if self.pipelining:
                self._pipelined(client, mail, rcpt_cmd)
            else:
                self._step(client, "MAIL", mail, (250,))
                self._step(client, "RCPT", rcpt_cmd, (250, 251))
                self._step(client, "DATA", b"DATA\r\n", (354,))
            payload = data if msg.dot_safe else dot_stuff(data)
            if not payload.endswith(_CRLF):
                payload += _CRLF
            client.send(payload + b".\r\n")
        except (smtplib.SMTPException, OSError) as exc:
            self.drop()
            raise SendError(f"connection lost before the end of the message: {exc}") from exc
        try:
            code, text = self._final_reply(client)
        except (smtplib.SMTPException, OSError) as exc:
            self.drop()
            raise AfterDot(f"connection lost after the message was sent, before the reply: {exc}") from exc
        if not 200 <= code < 300:
            raise refused("message", code, text)

    def _final_reply(self, client: smtplib.SMTP) -> tuple[int, bytes]:
        """The reply to the final dot, waited for up to ``FINAL_REPLY_TIMEOUT``."""
        sock = client.sock
        if sock is None:
            raise smtplib.SMTPServerDisconnected("connection closed before the reply")
        sock.settimeout(max(FINAL_REPLY_TIMEOUT, self.settings.timeout))
        try:
            return client.getreply()
        finally:
            if client.sock is not None:
                client.sock.settimeout(self.settings.timeout)

    def _step(self, client: smtplib.SMTP, stage: str, line: bytes, ok: tuple[int, ...]) -> None:
        client.send(line)
        code, text = client.getreply()
        if code not in ok:
            raise refused(stage, code, text)

    def _pipelined(self, client: smtplib.SMTP, mail: bytes, rcpt: bytes) -> None:
        # RFC 2920: MAIL, RCPT and DATA in one write, then their three replies.
        client.send(mail + rcpt + b"DATA\r\n")
        replies = [client.getreply() for _ in range(3)]
        failed = [(s, c, t) for s, (c, t) in zip(("MAIL", "RCPT"), replies, strict=False) if c not in (250, 251)]
        if replies[2][0] == 354 and not failed:
            return
        if replies[2][0] == 354:  # a server that opened DATA anyway: end it empty
            client.send(b".\r\n")
            client.getreply()
        stage, code, text = failed[0] if failed else ("DATA", *replies[2])
        raise refused(stage, code, text)

    def reset(self) -> None:
        """RSET after a failed transaction; a session that cannot is dropped."""
        if self.client is None:
            return
        try:
            code, _ = self.client.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self.drop()

    def drop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def quit(self) -> None:
        if self.client is not None:
            try:
                self.client.quit()
            except (smtplib.SMTPException, OSError):
                pass  # a closing session that fails to say goodbye changes nothing
            finally:
                self.client.close()
                self.client = None


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 4.5.2: double a dot that starts a line.

    ``bytes.replace`` rather than a multi-line regex: this runs once per
    message over the whole body, and the regex cost as much as the rest of
    the SMTP client together.
    """
    stuffed = data.replace(b"\n.", b"\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed
