import collections, sys
from pathlib import Path
sys.path.insert(0, "/work/main/tests/integration"); sys.path.insert(0, "/work/main/tests")
from test_daemon import *  # noqa

def test_dup(tmp_path):
    workdir = tmp_path
    port = free_port()
    config = write_config(workdir, port=port)
    ids = [new_id("acme.example") for _ in range(40)]
    daemon = Daemon(config).start()
    try:
        for mid in ids:
            send(port, build(from_="ivan@acme.example", message_id=mid))
        daemon.kill9()
    finally:
        daemon.close()
    daemon = Daemon(config).start()
    try:
        wait_until(lambda: len(tickets(config)) == 40, timeout=40, interval=0.5)
        assert daemon.stop() == 0
    finally:
        daemon.close()
    acks = [m for m in outgoing(workdir) if m["Auto-Submitted"] == "auto-replied"]
    c = collections.Counter(str(m["In-Reply-To"]) for m in acks)
    dups = [k for k, v in c.items() if v > 1]
    for m in acks:
        if str(m["In-Reply-To"]) in dups:
            print("DUP", m["In-Reply-To"], m["Message-ID"], m["Subject"])
    from mailticket.store.db import make_engine
    engine = make_engine(f"sqlite:///{workdir / 'mt.db'}")
    with engine.connect() as conn:
        for r in conn.execute(text("SELECT id, kind, state, attempts, message_id, envelope_from FROM outbox WHERE kind='ack' ORDER BY id")):
            if any(d.strip('<>') in str(r) for d in dups) or True:
                pass
        rows = list(conn.execute(text("SELECT id, state, attempts, last_error FROM outbox WHERE attempts > 1")))
        print("outbox attempts>1:", rows)
    assert not dups
