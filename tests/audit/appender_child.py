"""Child process for the crash test: append batches forever, acknowledging each batch
(after ``append`` returned, i.e. after commit) by fsyncing its last seq to a file."""

from __future__ import annotations

import os
import sys
from datetime import timedelta

from audit.log import AuditLog
from core.db import make_engine
from core.settings import load_settings
from tests.audit.conftest import event, log_signer


def main(ack_path: str, start: int) -> None:
    log = AuditLog(
        make_engine(load_settings()),
        log_signer(),
        checkpoint_every=200,
        checkpoint_interval=timedelta(days=1),
    )
    fd = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    i = start
    while True:
        receipts = log.append([event(i + j) for j in range(25)])
        os.write(fd, f"{receipts[-1].seq}\n".encode())
        os.fsync(fd)
        i += 25


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
