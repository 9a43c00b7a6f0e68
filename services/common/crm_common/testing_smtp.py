"""A real SMTP server for tests: aiosmtpd in its own process, writing what it receives to a Maildir.

A separate process (not a thread of the test) because the tests run under
eventlet's monkey patch and aiosmtpd runs on asyncio; and because a test can
then stop and start it like a real mail server going down and coming back.
It binds the same port each time it is started, so the services pointed at it
need no new configuration.
"""
import email
import email.policy
import mailbox
import socket
import subprocess
import sys
from pathlib import Path

from crm_common.testing import free_port, wait_until


def _accepts_connections(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class SmtpServer:
    def __init__(self, maildir, port=None, host="127.0.0.1"):
        self.maildir = Path(maildir)
        self.host = host
        self.port = port or free_port()
        self.process = None

    @property
    def env(self):
        """The environment that points the notifications service at this server."""
        return {"CRM_SMTP_HOST": self.host, "CRM_SMTP_PORT": str(self.port)}

    def start(self, timeout=15):
        if self.process is not None:
            return self
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Mailbox", str(self.maildir),
             "-l", f"{self.host}:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"the test SMTP server exited: {self.process.stderr.read().decode()}")
            return _accepts_connections(self.host, self.port)

        wait_until(ready, timeout, interval=0.05, message=f"the test SMTP server on port {self.port}")
        return self

    def stop(self):
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process.stderr.close()
        self.process = None

    def messages(self):
        """Every message received so far (email.message.EmailMessage, decoded headers)."""
        if not (self.maildir / "new").exists():
            return []
        box = mailbox.Maildir(self.maildir, factory=None, create=False)
        return [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default) for key in box.keys()]

    def messages_to(self, address):
        return [message for message in self.messages()
                if any(to.addr_spec.lower() == address.lower() for to in message["To"].addresses)]

    def wait_for(self, address, count=1, timeout=20):
        """The messages to ``address`` once there are at least ``count`` of them."""
        def arrived():
            found = self.messages_to(address)
            return found if len(found) >= count else None

        return wait_until(arrived, timeout, interval=0.1, message=f"{count} email(s) to {address}")
