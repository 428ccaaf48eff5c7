"""Queueing: the discrete-event simulation of batching servers, and the analytic formulas.

`des` serves requests in arrival order (first come, first served) on servers that each hold
up to `slots` requests at once. A request starts as soon as a slot is free and every earlier
request has started; it goes to the server with the most free slots; its service time is

    prefill_s_per_token · prompt_tokens + tokens · (itl0 + alpha · (batch - 1))

with `batch` the requests on that server once it joins (continuous batching: the inter-token
latency grows with the batch). The wait is known on arrival, so a request whose wait would
exceed `max_wait` is not queued (it overflows). With one slot per server and alpha = 0 this is
the FCFS G/G/c queue, which the tests hold against Erlang C.

The analytic side is M/M/k with balking on the exact wait (customers who would wait longer
than w leave, the "M/M/k+D" balking model). With b = k·mu and theta = b − lambda, the waiting
time V of an arrival has an atom at 0 and the density

    f(x) = lambda · p · X · exp(−theta · x)   on [0, w),    lambda · p · X · exp(−theta·w − b·(x − w))  beyond,

where p = ErlangB(k−1, a) (a = lambda/mu), X = P(V = 0) = 1 / (1 + lambda · p · G) and
G = (1 − e^{−theta w}) / theta + e^{−theta w} / b. Hence P(balk) = lambda p X e^{−theta w} / b. With
w = ∞ it is Erlang C. It holds for any load when w is finite (the queue cannot grow past w).
"""

from __future__ import annotations

import heapq
import math
from array import array

import numpy as np

DES_CHUNK = 1 << 18  # requests whose inputs are unboxed into lists at once (bounds the simulation's memory)


def des(
    arrival: np.ndarray,
    prompt_tokens: np.ndarray,
    tokens: np.ndarray,
    itl0: list[float],
    alpha: list[float],
    slots: list[int],
    prefill_s: list[float],
    max_wait: float = math.inf,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start time — NaN when the request overflowed —, server, batch size) of every request.

    `arrival` must be sorted. Server parameters are per server (lists of equal length).
    """
    n = len(arrival)
    m = len(slots)
    if n == 0 or m == 0:
        return np.full(n, np.nan), np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64)
    if np.any(np.diff(arrival) < 0):
        raise ValueError("arrival times must be sorted")
    i0 = [float(x) for x in itl0]
    al = [float(x) for x in alpha]
    pre = [float(x) for x in prefill_s]
    cap = [int(x) for x in slots]
    free = list(cap)
    total_free = sum(free)
    heap: list[tuple[float, int]] = []
    push, pop = heapq.heappush, heapq.heappop
    # Typed arrays, not lists: 8 bytes a request each instead of a pointer and a boxed number.
    st = array("d", [math.nan]) * n
    sv = array("q", [-1]) * n
    nb = array("q", [0]) * n
    clock = 0.0
    for c0 in range(0, n, DES_CHUNK):  # the inputs as Python lists (fast to index), a chunk at a time
        a_list = arrival[c0 : c0 + DES_CHUNK].tolist()
        p_list = prompt_tokens[c0 : c0 + DES_CHUNK].tolist()
        k_list = tokens[c0 : c0 + DES_CHUNK].tolist()
        for j, a in enumerate(a_list):
            t = a if a > clock else clock
            while heap and heap[0][0] <= t:
                s = pop(heap)[1]
                free[s] += 1
                total_free += 1
            if not total_free:
                t = heap[0][0]
                if t - a > max_wait:
                    continue
                while heap and heap[0][0] <= t:
                    s = pop(heap)[1]
                    free[s] += 1
                    total_free += 1
            elif t - a > max_wait:
                continue
            f = max(free)
            s = free.index(f)
            b = cap[s] - f + 1
            free[s] = f - 1
            total_free -= 1
            push(heap, (t + p_list[j] * pre[s] + k_list[j] * (i0[s] + al[s] * (b - 1)), s))
            clock = t
            i = c0 + j
            st[i] = t
            sv[i] = s
            nb[i] = b
    return np.frombuffer(st, dtype=np.float64), np.frombuffer(sv, dtype=np.int64), np.frombuffer(nb, dtype=np.int64)


def des_scaled(
    arrival: np.ndarray,
    prompt_tokens: np.ndarray,
    tokens: np.ndarray,
    itl0: list[float],
    alpha: list[float],
    slots: list[int],
    prefill_s: list[float],
    max_wait: float,
    up_times: np.ndarray,
    up_counts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`des` on servers that come and go: servers 0 … up_counts[i] - 1 serve from up_times[i] on.

    A server going down takes no new request and finishes those it holds; one coming up brings its
    free slots. A request waits for a free slot on a serving server (a completion, or a server
    coming up), and overflows when that would take longer than `max_wait` (or never comes).
    With one serving count all along it serves exactly as `des` does.
    """
    n = len(arrival)
    m = len(slots)
    if n == 0 or m == 0:
        return np.full(n, np.nan), np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64)
    if np.any(np.diff(arrival) < 0):
        raise ValueError("arrival times must be sorted")
    i0 = [float(x) for x in itl0]
    al = [float(x) for x in alpha]
    pre = [float(x) for x in prefill_s]
    cap = [int(x) for x in slots]
    ev_t = [float(x) for x in up_times]
    ev_c = [min(int(x), m) for x in up_counts]
    n_ev = len(ev_t)
    free = list(cap)
    up = ev_c[0]
    ev = 1
    total_free = sum(free[:up])
    inf = math.inf
    next_ev = ev_t[ev] if ev < n_ev else inf
    heap: list[tuple[float, int]] = []
    push, pop = heapq.heappush, heapq.heappop
    st = array("d", [math.nan]) * n
    sv = array("q", [-1]) * n
    nb = array("q", [0]) * n
    clock = 0.0
    for c0 in range(0, n, DES_CHUNK):
        a_list = arrival[c0 : c0 + DES_CHUNK].tolist()
        p_list = prompt_tokens[c0 : c0 + DES_CHUNK].tolist()
        k_list = tokens[c0 : c0 + DES_CHUNK].tolist()
        for j, a in enumerate(a_list):
            t = a if a > clock else clock
            while True:  # completions and serving changes up to t, in time order (completions first on a tie)
                tc = heap[0][0] if heap else inf
                if tc <= t and tc <= next_ev:
                    s = pop(heap)[1]
                    free[s] += 1
                    if s < up:
                        total_free += 1
                elif next_ev <= t:
                    new = ev_c[ev]
                    if new > up:
                        total_free += sum(free[up:new])
                    else:
                        total_free -= sum(free[new:up])
                    up = new
                    ev += 1
                    next_ev = ev_t[ev] if ev < n_ev else inf
                else:
                    break
            if not total_free:
                while not total_free:  # wait for a slot: the next completion or a server coming up
                    tc = heap[0][0] if heap else inf
                    t = tc if tc <= next_ev else next_ev
                    if t == inf or t - a > max_wait:
                        break
                    while True:
                        tc = heap[0][0] if heap else inf
                        if tc <= t and tc <= next_ev:
                            s = pop(heap)[1]
                            free[s] += 1
                            if s < up:
                                total_free += 1
                        elif next_ev <= t:
                            new = ev_c[ev]
                            if new > up:
                                total_free += sum(free[up:new])
                            else:
                                total_free -= sum(free[new:up])
                            up = new
                            ev += 1
                            next_ev = ev_t[ev] if ev < n_ev else inf
                        else:
                            break
                if not total_free:
                    continue
            elif t - a > max_wait:
                continue
            f = max(free[:up])
            s = free.index(f)
            b = cap[s] - f + 1
            free[s] = f - 1
            total_free -= 1
            push(heap, (t + p_list[j] * pre[s] + k_list[j] * (i0[s] + al[s] * (b - 1)), s))
            clock = t
            i = c0 + j
            st[i] = t
            sv[i] = s
            nb[i] = b
    return np.frombuffer(st, dtype=np.float64), np.frombuffer(sv, dtype=np.int64), np.frombuffer(nb, dtype=np.int64)


# --- formulas -------------------------------------------------------------------------------


def erlang_b(k: int, a):
    """Erlang B (blocking probability) for k servers and offered load a (scalar or array)."""
    a = np.asarray(a, dtype=float)
    inv = np.ones_like(a)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        for j in range(1, int(k) + 1):
            inv = 1.0 + inv * (j / a)
        out = np.where(a > 0, 1.0 / inv, 0.0 if k > 0 else 1.0)
    return out if out.ndim else float(out)


def erlang_c(k: int, a):
    """Erlang C: the probability that an arrival waits, M/M/k with offered load a < k."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(erlang_b(k, a))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(a < k, k * b / (k - a * (1 - b)), 1.0)
    return out if out.ndim else float(out)


def mmk_wait(k: int, lam: float, mu: float) -> tuple[float, float]:
    """(P(wait > 0), mean wait) of M/M/k FCFS (Erlang C)."""
    a = lam / mu
    if a >= k:
        return 1.0, math.inf
    c = float(erlang_c(k, a))
    return c, c / (k * mu - lam)


def balking(k: int, lam, service_s, max_wait: float) -> dict[str, np.ndarray]:
    """M/M/k where an arrival leaves when its wait would exceed `max_wait` (vectorized over lam, service_s).

    Returns arrays: p_balk, p_wait (a positive wait, balkers included), mean_wait (of those
    served), and what `wait_cdf` needs: x0 = P(V = 0), theta, dens0 and densw (the density of
    V just above 0 and just below w). With max_wait = ∞ and a load of k or more the queue is
    unstable: p_wait = 1 and mean_wait = ∞.
    """
    lam, s = np.broadcast_arrays(np.asarray(lam, dtype=float), np.asarray(service_s, dtype=float))
    shape = lam.shape
    out = {key: np.zeros(shape) for key in ("p_balk", "p_wait", "mean_wait", "theta", "dens0", "densw")}
    out["x0"] = np.ones(shape)
    if k <= 0:
        out["p_balk"] = np.where(lam > 0, 1.0, 0.0)
        return out
    live = (lam > 0) & (s > 0)
    if not live.any():
        return out
    lam_, s_ = lam[live], s[live]
    b = k / s_
    theta = b - lam_
    big_l = lam_ * np.asarray(erlang_b(k - 1, lam_ * s_))  # lambda · ErlangB(k-1, a)
    w = float(max_wait)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        if math.isinf(w):
            stable = theta > 0
            th = np.where(stable, theta, 1.0)
            x0 = np.where(stable, 1.0 / (1.0 + big_l / th), 0.0)
            dens0 = big_l * x0
            densw = np.zeros_like(dens0)
            p_balk = np.zeros_like(dens0)
            mean = np.where(stable, dens0 / th**2, np.inf)
        else:
            tw = theta * w
            zero = np.abs(tw) < 1e-7
            neg = (theta < 0) & ~zero
            th = np.where(zero, 1.0, theta)
            # theta >= 0: e = exp(-theta w) in (0, 1]
            e = np.exp(-np.clip(tw, 0, 745))
            g = np.where(zero, w, -np.expm1(-np.clip(tw, 0, 745)) / th) + e / b
            x0_pos = 1.0 / (1.0 + big_l * g)
            d0_pos = big_l * x0_pos
            m_pos = np.where(zero, d0_pos * w * w / 2, d0_pos * (-np.expm1(-tw) - tw * e) / th**2)
            # theta < 0: r = -theta, q = exp(-r w) in (0, 1)
            r = np.where(neg, -theta, 1.0)
            q = np.exp(-np.clip(r * w, 0, 745))
            denom = q + big_l * ((1 - q) / r + 1.0 / b)
            x0_neg = q / denom
            dw_neg = big_l / denom
            m_neg = dw_neg * (w / r - (1 - q) / r**2)
            x0 = np.where(neg, x0_neg, x0_pos)
            dens0 = np.where(neg, big_l * x0_neg, d0_pos)
            densw = np.where(neg, dw_neg, d0_pos * e)
            p_balk = densw / b
            mean = np.where(neg, m_neg, m_pos) / np.maximum(1.0 - p_balk, 1e-300)
    out["p_balk"][live] = np.clip(p_balk, 0, 1)
    out["x0"][live] = np.clip(x0, 0, 1)
    out["p_wait"][live] = np.clip(1.0 - x0, 0, 1)
    out["mean_wait"][live] = mean
    out["theta"][live] = theta
    out["dens0"][live] = dens0
    out["densw"][live] = densw
    return out


def balking_per(k: np.ndarray, lam, service_s, max_wait: float) -> dict[str, np.ndarray]:
    """`balking` with a number of slots per element (autoscaling): one call per distinct count.

    Elements with no slot and arrivals balk all (they wait for nothing and none is served)."""
    k = np.asarray(k, dtype=np.int64)
    lam, s = np.broadcast_arrays(np.asarray(lam, dtype=float), np.asarray(service_s, dtype=float))
    out = {key: np.zeros(k.shape) for key in ("p_balk", "p_wait", "mean_wait", "theta", "dens0", "densw")}
    out["x0"] = np.ones(k.shape)
    for kv in np.unique(k):
        sel = k == kv
        part = balking(int(kv), lam[sel], s[sel], max_wait)
        for key, v in part.items():
            out[key][sel] = v
    none = (k <= 0) & (lam > 0)
    out["x0"][none] = 0.0
    out["p_wait"][none] = 1.0
    out["p_balk"][none] = 1.0
    return out


def wait_cdf(y, q: dict[str, np.ndarray], max_wait: float) -> np.ndarray:
    """P(V <= y and the request is served) for the queues of `balking` (elementwise; y < 0 gives 0)."""
    y = np.asarray(y, dtype=float)
    x0, theta, d0, dw = q["x0"], q["theta"], q["dens0"], q["densw"]
    w = float(max_wait)
    yy = np.clip(y, 0.0, w)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        zero = np.abs(theta * np.where(math.isinf(w), yy, w)) < 1e-7
        th = np.where(zero, 1.0, theta)
        pos = d0 * -np.expm1(-np.clip(th * yy, -745, 745)) / th
        if math.isinf(w):
            neg = np.zeros_like(pos)
        else:
            r = np.where(theta < 0, -th, 1.0)
            neg = dw * (np.exp(-np.clip(r * (w - yy), 0, 745)) - np.exp(-np.clip(r * w, 0, 745))) / r
        area = np.where(zero, d0 * yy, np.where(theta < 0, neg, pos))
        out = x0 + area
    return np.where(y < 0, 0.0, np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0))
