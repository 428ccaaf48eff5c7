"""How an amount of money reads, in the app, the CLI and alert messages alike."""

from __future__ import annotations


def usd(x: float | None) -> str:
    """Dollars with as many decimals as a small amount needs: "$1,234", "$5.20", "$0.0042",
    "$0.000075"; a minus before the sign ("-$5", never "$-5"); "—" for no value."""
    if x is None:
        return "—"
    a = abs(x)
    if a == 0:
        return "$0"
    sign = "-" if x < 0 else ""
    if a >= 100:
        return f"{sign}${a:,.0f}"
    if a >= 1:
        return f"{sign}${a:,.2f}"
    if a >= 0.01:
        return f"{sign}${a:.4f}"
    return f"{sign}${a:.6f}" if a >= 1e-6 else f"{sign}${a:.9f}"
