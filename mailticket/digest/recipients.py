"""Who a routed list goes to: ``[digest] handover.to`` and ``weekly.to`` made into addresses.

A ``to`` list names roles (``oncall``, ``dedicated``, ``deputy``), whole lines
(``line:L2``) and plain addresses (``config.digest`` checks the words). This
module turns one list into the addresses of one mail run, in the order given,
each once, so the handover of a shift or the summary of a contract reaches
exactly the people the admin named and nobody twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailticket.config import Config
from mailticket.config.digest import DEDICATED, DEPUTY, LINE_PREFIX, ONCALL
from mailticket.model import Contract


def expand(config: Config, specs: Sequence[str], *, pair: Sequence[str] = (),
           contract: Contract | None = None) -> list[str]:
    """The addresses ``specs`` name, given the on-call ``pair`` and the ``contract`` at hand.

    A role with nobody behind it (a contract without a deputy) names nobody.
    """
    out: list[str] = []
    for spec in specs:
        if spec == ONCALL:
            found = list(pair)
        elif spec == DEDICATED:
            found = [contract.dedicated_engineer] if contract and contract.dedicated_engineer else []
        elif spec == DEPUTY:
            found = [contract.deputy_engineer] if contract and contract.deputy_engineer else []
        elif spec.startswith(LINE_PREFIX):
            line = spec.removeprefix(LINE_PREFIX)
            found = [e.address for e in config.engineers.values() if e.line.value == line]
        else:
            found = [spec]
        out.extend(a for a in found if a not in out)
    return out
