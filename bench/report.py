"""Aggregation, tables, the target check, JSON and the chart."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from targets import BY_NAME, CLUSTER_DIRECT, MTLS_PEERS, PEERS, SHARD3_NAMES, SHARDGATES, SHARDGATES_PLAIN


@dataclass(frozen=True)
class Figure:
    key: str            # key in a workload's result dict
    label: str
    higher_better: bool
    fmt: str            # format spec for one value
    compare: bool = True  # False: context only (no ratios, not "best")


def _request_figures(per: str = "request") -> list[Figure]:
    """The figures of every request workload: rate, latency, CPU per request."""
    return [Figure("rps", f"{per}s/s", True, ",.0f"),
            Figure("p50_ms", "p50 ms", False, ".3f"),
            Figure("p99_ms", "p99 ms", False, ".3f"),
            Figure("cpu_us_per_req", f"proxy CPU µs/{per}", False, ".2f"),
            Figure("client_core_share", "client CPU, cores", False, ".2f", False)]


# workload name -> (title, figures). One table per workload.
WORKLOADS: dict[str, tuple[str, list[Figure]]] = {
    "getset_p1": ("GET/SET, 50 connections, pipeline 1, random keys", _request_figures()),
    "getset_p16": ("GET/SET, 50 connections, pipeline 16, random keys", _request_figures()),
    "hs_new": ("New connection per request, full TLS 1.2 handshake (openssl s_time -new -tls1_2)", [
        Figure("hs_per_s", "handshakes/s", True, ",.0f"),
        Figure("cpu_us_per_hs", "proxy CPU µs/handshake", False, ".0f"),
        Figure("client_core_share", "client CPU, cores", False, ".2f", False)]),
    "hs_reuse": ("New connection per request, resumed TLS 1.2 session (openssl s_time -reuse -tls1_2)", [
        Figure("hs_per_s", "handshakes/s", True, ",.0f"),
        Figure("cpu_us_per_hs", "proxy CPU µs/handshake", False, ".0f"),
        Figure("resumed_frac", "fraction resumed", True, ".2f", False),
        Figure("client_core_share", "client CPU, cores", False, ".2f", False)]),
    "memory": ("Memory: RSS growth per idle connection (fresh instance; TLS: handshake + PING, then idle)", [
        Figure("kib_per_conn", "KiB/connection", False, ".1f")]),
}



# The 3-shard workload: its own targets (targets.SHARD3_TARGETS) and its own
# ratios, to twemproxy (plaintext) and stunnel-twemproxy (TLS).
S3_BASES = ["twemproxy", "stunnel-twemproxy"]
S3_WORKLOADS: dict[str, tuple[str, list[Figure]]] = {
    "s3_getset_p1": ("3 shards: GET/SET, 50 connections, pipeline 1, random keys",
                     _request_figures("request")),
    "s3_getset_p16": ("3 shards: GET/SET, 50 connections, pipeline 16, random keys",
                      _request_figures("request")),
    "s3_mget_p1": (f"3 shards: MGET of 10 random keys, 50 connections, pipeline 1",
                   _request_figures("MGET")),
    "s3_mget_p16": (f"3 shards: MGET of 10 random keys, 50 connections, pipeline 16",
                    _request_figures("MGET")),
}

# Client certificates and TLS to the shard (mtls): its own targets
# (targets.MTLS_TARGETS) and ratios to haproxy-mtls and stunnel-mtls.
MTLS_WORKLOADS: dict[str, tuple[str, list[Figure]]] = {
    "mtls_getset_p1": ("mTLS + TLS to the shard: GET/SET, 50 connections, pipeline 1, "
                       "random keys", _request_figures()),
    "mtls_getset_p16": ("mTLS + TLS to the shard: GET/SET, 50 connections, pipeline 16, "
                        "random keys", _request_figures()),
    "mtls_hs_new": ("mTLS: new connection per request, full TLS 1.2 handshake with a client "
                    "certificate (openssl s_time -new -tls1_2 -cert)", WORKLOADS["hs_new"][1]),
    "mtls_hs_reuse": ("mTLS: new connection per request, resumed TLS 1.2 session "
                      "(openssl s_time -reuse -tls1_2 -cert)", WORKLOADS["hs_reuse"][1]),
}
_CONN_FIGURES = [Figure("conns_per_s", "connections/s", True, ",.0f", False),
                 Figure("cpu_us_per_conn", "proxy CPU µs/connection", False, ".0f"),
                 Figure("resumed_frac", "fraction resumed", True, ".2f", False)]
MTLS_WORKLOADS["mtls_conn_full"] = (
    "mTLS: new connection + GET (a miss), full TLS 1.3 handshake with a client certificate "
    "(Python client: the rate is the client's, the CPU the target's)", _CONN_FIGURES)
MTLS_WORKLOADS["mtls_conn_resumed"] = (
    "mTLS: new connection + GET (a miss), resumed TLS 1.3 session (the previous "
    "connection's ticket)", _CONN_FIGURES)

# A Redis Cluster (cluster): its own targets (targets.CLUSTER_NAMES), ratios
# to direct-cluster-tls (redis-benchmark --cluster at the nodes' TLS ports).
def _cluster_figures() -> list[Figure]:
    f = _request_figures()
    return f[:4] + [Figure("nodes_cpu_us_per_req", "nodes' CPU µs/request", False, ".2f"),
                    Figure("total_cpu_us_per_req", "proxy + nodes µs/request", False, ".2f"),
                    f[4]]


CLUSTER_WORKLOADS: dict[str, tuple[str, list[Figure]]] = {
    "cl_getset_p1": ("Redis Cluster (3 masters + 3 replicas): GET/SET, 50 connections, "
                     "pipeline 1, random keys", _cluster_figures()),
    "cl_getset_p16": ("Redis Cluster (3 masters + 3 replicas): GET/SET, 50 connections, "
                      "pipeline 16, random keys", _cluster_figures()),
}
ALL_WORKLOADS = {**WORKLOADS, **S3_WORKLOADS, **MTLS_WORKLOADS, **CLUSTER_WORKLOADS}


def aggregate(rounds: list[dict]) -> dict:
    """{workload: {figure: {target: {median, min, max, values}}}}"""
    out: dict = {}
    for rec in rounds:
        if "error" in rec:
            continue
        wl = out.setdefault(rec["workload"], {})
        for fig in ALL_WORKLOADS[rec["workload"]][1]:
            if fig.key in rec["result"]:
                wl.setdefault(fig.key, {}).setdefault(rec["target"], {"values": []})[
                    "values"].append(rec["result"][fig.key])
    for wl in out.values():
        for per_target in wl.values():
            for s in per_target.values():
                v = s["values"]
                s.update(median=statistics.median(v), min=min(v), max=max(v))
    return out


def best(per_target: dict, names: list[str], higher_better: bool) -> tuple[str, float] | None:
    cands = [(n, per_target[n]["median"]) for n in names if n in per_target]
    if not cands:
        return None
    return (max if higher_better else min)(cands, key=lambda c: c[1])


def _ratio(a: float, b: float | None) -> str:
    if b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def tables(summary: dict, target_order: list[str], notes: dict[str, str]) -> str:
    lines: list[str] = []
    for wl_name, (title, figures) in WORKLOADS.items():
        wl = summary.get(wl_name)
        if not wl:
            continue
        lines += ["", f"== {title}", "   median over rounds [min–max]; ×direct = ratio to direct; "
                  "×best peer = ratio to the best of " + ", ".join(PEERS)]
        if wl_name in notes:
            lines.append("   " + notes[wl_name])
        head = f"   {'figure':<24} {'target':<17} {'median':>12} {'[min–max]':>25} " \
               f"{'×direct':>8} {'×best peer':>11}"
        lines += [head, "   " + "-" * (len(head) - 3)]
        for fig in figures:
            per = wl.get(fig.key, {})
            if not per:
                continue
            bp = best(per, PEERS, fig.higher_better) if fig.compare else None
            direct = per.get("direct", {}).get("median")
            for t in target_order:
                if t not in per:
                    continue
                s = per[t]
                rng = f"[{s['min']:{fig.fmt}}–{s['max']:{fig.fmt}}]"
                mark = " (best peer)" if bp and bp[0] == t else ""
                if not fig.compare:
                    rd, rp = "", ""
                else:
                    rd = _ratio(s["median"], direct) if t != "direct" else "1.00×"
                    rp = _ratio(s["median"], bp[1] if bp else None)
                lines.append(f"   {fig.label:<24} {t:<17} {s['median']:>12{fig.fmt}} {rng:>25} "
                             f"{rd:>8} {rp:>11}{mark}")
            lines.append("")
    return "\n".join(lines)


def s3_tables(summary: dict, target_order: list[str], checks: dict | None) -> str:
    """The shards3 tables: ratios to twemproxy and to stunnel-twemproxy."""
    lines: list[str] = []
    if checks:
        lines += ["", "== 3 shards: correctness before timing (SET/GET/MGET through the target, "
                      "keys counted on each shard)"]
        for t in target_order:
            c = checks.get(t)
            if c is None:
                continue
            lines.append(f"   {'PASS' if c.get('pass') else 'FAIL':<5} {t:<18} keys per shard "
                         f"{c.get('keys_per_shard')}, redis-benchmark MSET keys per shard "
                         f"{c.get('mset_keys_per_shard')}"
                         + ("; " + "; ".join(c["problems"]) if c.get("problems") else ""))
    for wl_name, (title, figures) in S3_WORKLOADS.items():
        wl = summary.get(wl_name)
        if not wl:
            continue
        lines += ["", f"== {title}",
                  "   median over rounds [min–max]; ×twemproxy, ×stunnel-tw = ratio to "
                  "twemproxy (plaintext) and to stunnel → twemproxy (TLS)",
                  "   proxy CPU: the target's own processes (stunnel-twemproxy: stunnel + "
                  "nutcracker), never the shards"]
        head = f"   {'figure':<24} {'target':<18} {'median':>12} {'[min–max]':>25} " \
               f"{'×twemproxy':>11} {'×stunnel-tw':>12}"
        lines += [head, "   " + "-" * (len(head) - 3)]
        for fig in figures:
            per = wl.get(fig.key, {})
            for t in target_order:
                if t not in per:
                    continue
                s = per[t]
                rng = f"[{s['min']:{fig.fmt}}–{s['max']:{fig.fmt}}]"
                ratios = ["" if not fig.compare else
                          _ratio(s["median"], per.get(b, {}).get("median")) for b in S3_BASES]
                lines.append(f"   {fig.label:<24} {t:<18} {s['median']:>12{fig.fmt}} {rng:>25} "
                             f"{ratios[0]:>11} {ratios[1]:>12}")
            lines.append("")
    return "\n".join(lines)


def check_shards3(summary: dict) -> list[dict]:
    """The 3-shard targets. As for the single-shard ones, shardgate is judged by
    the better of its two configurations per figure (workers: 1 and auto: an
    operator picks `workers`); both are printed."""
    checks = []

    def ratio_check(desc: str, wl: str, key: str, peer: str, op: str, factor: float) -> None:
        auto, pv = _med(summary, wl, key, "shardgate-3"), _med(summary, wl, key, peer)
        one = _med(summary, wl, key, "shardgate-3-1w")
        if pv is None or (auto is None and one is None):
            checks.append({"target": desc, "status": "n/a", "detail": "not measured"})
            return
        lower_better = op == "<="
        candidates = [(n, v) for n, v in (("shardgate-3", auto), ("shardgate-3-1w", one))
                      if v is not None]
        name, sg = (min if lower_better else max)(candidates, key=lambda c: c[1])
        ok = sg <= pv * factor if lower_better else sg >= pv * factor
        both = "; ".join(f"{n} {_num(v)} ({v / pv:.3f})" for n, v in candidates)
        checks.append({"target": desc, "status": "PASS" if ok else "FAIL",
                       "detail": f"{name} {_num(sg)} vs {peer} {_num(pv)} "
                                 f"(ratio {sg / pv:.3f}, need {op} {factor:.3g}) [{both}]"})

    ratio_check("3 shards: GET/SET requests/s P16 >= 1.5x stunnel-twemproxy", "s3_getset_p16",
                "rps", "stunnel-twemproxy", ">=", 1.5)
    for pl in (1, 16):
        ratio_check(f"3 shards: GET/SET proxy CPU/request P{pl} <= twemproxy (no TLS)",
                    f"s3_getset_p{pl}", "cpu_us_per_req", "twemproxy", "<=", 1.0)
    return checks


def format_s3_checks(checks: list[dict]) -> str:
    if not checks:
        return ""
    w = max(len(c["target"]) for c in checks)
    lines = ["", "== 3-shard targets (the better of shardgate-3-1w and shardgate-3 per figure, "
                 "as for the single-shard targets)"]
    for c in checks:
        lines.append(f"   {c['status']:<5} {c['target']:<{w}}  {c['detail']}")
    return "\n".join(lines)


# ----------------------------------------------------------- single-shard targets


def _med(summary: dict, wl: str, key: str, target: str) -> float | None:
    return summary.get(wl, {}).get(key, {}).get(target, {}).get("median")


def _sg_best(summary: dict, wl: str, key: str, higher_better: bool,
             rows: list[str] = SHARDGATES) -> tuple[str, float] | None:
    per = summary.get(wl, {}).get(key, {})
    return best(per, rows, higher_better)


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def check_targets(summary: dict, conns: dict | None) -> list[dict]:
    """The single-shard targets, against shardgate's medians (the best shardgate
    row for each figure; the detail also gives the best plain-forwarding row,
    the one-shard default, when a multiplex row was better)."""
    checks = []

    def ratio_check(desc: str, wl: str, key: str, peer: str, op: str, factor: float,
                    higher_better: bool) -> None:
        sg, pv = _sg_best(summary, wl, key, higher_better), _med(summary, wl, key, peer)
        if sg is None or pv is None:
            checks.append({"target": desc, "status": "n/a", "detail": "not measured"})
            return
        limit = pv * factor
        ok = sg[1] <= limit if op == "<=" else sg[1] >= limit
        detail = (f"{sg[0]} {_num(sg[1])} vs {peer} {_num(pv)} "
                  f"(ratio {sg[1] / pv:.3f}, need {op} {factor:.3g})")
        plain = _sg_best(summary, wl, key, higher_better, SHARDGATES_PLAIN)
        if plain is not None and plain[0] != sg[0] and sg[0] not in SHARDGATES_PLAIN:
            detail += f"; plain forwarding: {plain[0]} {_num(plain[1])} ({plain[1] / pv:.3f})"
        checks.append({"target": desc, "status": "PASS" if ok else "FAIL", "detail": detail})

    for wl, pl in (("getset_p1", 1), ("getset_p16", 16)):
        ratio_check(f"proxy CPU/request P{pl} <= 0.6x haproxy", wl, "cpu_us_per_req",
                    "haproxy", "<=", 0.6, False)
    ratio_check("proxy CPU/request P16 <= 0.9x nginx", "getset_p16", "cpu_us_per_req",
                "nginx", "<=", 0.9, False)
    for wl, pl in (("getset_p1", 1), ("getset_p16", 16)):
        ratio_check(f"proxy CPU/request P{pl} <= 1/3 stunnel", wl, "cpu_us_per_req",
                    "stunnel", "<=", 1 / 3, False)
    ratio_check("requests/s P16 >= 1.25x haproxy", "getset_p16", "rps", "haproxy", ">=", 1.25, True)
    ratio_check("requests/s P16 >= nginx", "getset_p16", "rps", "nginx", ">=", 1.0, True)
    ratio_check("requests/s P1 >= haproxy", "getset_p1", "rps", "haproxy", ">=", 1.0, True)
    ratio_check("p99 P1 <= haproxy", "getset_p1", "p99_ms", "haproxy", "<=", 1.0, False)
    ratio_check("proxy CPU/full handshake <= 0.55x haproxy", "hs_new", "cpu_us_per_hs",
                "haproxy", "<=", 0.55, False)
    ratio_check("handshakes/s >= haproxy", "hs_new", "hs_per_s", "haproxy", ">=", 1.0, True)

    sg = _sg_best(summary, "memory", "kib_per_conn", False)
    per = summary.get("memory", {}).get("kib_per_conn", {})
    bp = best(per, PEERS, False)
    if sg is None:
        checks.append({"target": "memory/idle TLS connection <= 16 KiB", "status": "n/a",
                       "detail": "not measured"})
        checks.append({"target": "memory/idle TLS connection below every peer",
                       "status": "n/a", "detail": "not measured"})
    else:
        checks.append({"target": "memory/idle TLS connection <= 16 KiB",
                       "status": "PASS" if sg[1] <= 16 else "FAIL",
                       "detail": f"{sg[0]} {sg[1]:.1f} KiB"})
        checks.append({"target": "memory/idle TLS connection below every peer",
                       "status": "n/a" if bp is None else ("PASS" if sg[1] < bp[1] else "FAIL"),
                       "detail": f"{sg[0]} {sg[1]:.1f} KiB vs best peer "
                                 + (f"{bp[0]} {bp[1]:.1f} KiB" if bp else "n/a")})
    if not conns:
        checks.append({"target": "10,000 concurrent TLS connections, no error", "status": "n/a",
                       "detail": "not run (--conns 10000)"})
    else:
        res = {t: conns[t] for t in SHARDGATES if t in conns}
        ok = [t for t, r in res.items() if r.get("pass")]
        n = next(iter(conns.values())).get("raw", {}).get("count", "?") if conns else "?"
        checks.append({"target": f"{n:,} concurrent TLS connections, no error"
                       if isinstance(n, int) else "concurrent TLS connections, no error",
                       "status": "PASS" if ok else "FAIL",
                       "detail": "; ".join(f"{t}: {'pass' if r.get('pass') else 'fail'}, "
                                           f"{r.get('errors', '?')} errors" for t, r in res.items())})
    return checks


def format_checks(checks: list[dict]) -> str:
    w = max(len(c["target"]) for c in checks)
    lines = ["", "== Issue 6 targets (shardgate = its best row per figure: plain forwarding "
                 "shardgate-1w/shardgate, or multiplex: true shardgate-mux-1w/shardgate-mux)"]
    for c in checks:
        lines.append(f"   {c['status']:<5} {c['target']:<{w}}  {c['detail']}")
    return "\n".join(lines)


# ------------------------------------------------------------------- chart


def chart(summary: dict, target_order: list[str], path: Path) -> None:
    """Throughput and p99 side by side: grouped bars per target, P1 and P16,
    error bars spanning min–max over rounds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.38
    for ax, key, title, log in ((axes[0], "rps", "GET/SET requests/s (higher is better)", True),
                                (axes[1], "p99_ms", "GET/SET p99 latency, ms (lower is better)",
                                 False)):
        names = [t for t in target_order
                 if any(t in summary.get(w, {}).get(key, {}) for w in ("getset_p1", "getset_p16"))]
        for i, (wl, label) in enumerate((("getset_p1", "pipeline 1"),
                                         ("getset_p16", "pipeline 16"))):
            per = summary.get(wl, {}).get(key, {})
            xs = [j + (i - 0.5) * width for j in range(len(names))]
            med = [per.get(t, {}).get("median", 0) for t in names]
            lo = [m - per.get(t, {}).get("min", m) for m, t in zip(med, names)]
            hi = [per.get(t, {}).get("max", m) - m for m, t in zip(med, names)]
            ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=label)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=20)
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------ mtls group


def mtls_tables(summary: dict, target_order: list[str]) -> str:
    """The mtls tables: ratios to haproxy-mtls and to stunnel-mtls."""
    lines: list[str] = []
    for wl_name, (title, figures) in MTLS_WORKLOADS.items():
        wl = summary.get(wl_name)
        if not wl:
            continue
        lines += ["", f"== {title}",
                  "   median over rounds [min–max]; ×haproxy, ×stunnel = ratio to haproxy-mtls "
                  "and to stunnel-mtls",
                  "   proxy CPU: the target's own processes, never the shard (redis-mtls: "
                  "redis-server itself, clients straight to its TLS port)"]
        if wl_name.startswith("mtls_hs"):
            lines.append("   s_time sends no command: haproxy and stunnel open their shard "
                         "connection on accept (its cost is in their figure), shardgate on the "
                         "first command (not here); see the new connection + GET tables")
        if wl_name.startswith("mtls_conn"):
            lines.append("   every connection carries a command: a proxy with a shard connection "
                         "per client (not the -mux rows) also opens a TLS connection to the "
                         "shard, resuming its cached session")
        head = f"   {'figure':<24} {'target':<22} {'median':>12} {'[min–max]':>25} " \
               f"{'×haproxy':>9} {'×stunnel':>9}"
        lines += [head, "   " + "-" * (len(head) - 3)]
        for fig in figures:
            per = wl.get(fig.key, {})
            for t in target_order:
                if t not in per:
                    continue
                st = per[t]
                rng = f"[{st['min']:{fig.fmt}}–{st['max']:{fig.fmt}}]"
                ratios = ["" if not fig.compare else
                          _ratio(st["median"], per.get(b, {}).get("median")) for b in MTLS_PEERS]
                lines.append(f"   {fig.label:<24} {t:<22} {st['median']:>12{fig.fmt}} {rng:>25} "
                             f"{ratios[0]:>9} {ratios[1]:>9}")
            lines.append("")
    return "\n".join(lines)


def format_mtls_resume(mt: dict) -> str:
    res = mt.get("resume", {})
    if not res:
        return ""
    lines = ["", "== mTLS: shard reconnects (CLIENT KILL TYPE normal on the shard, then GET "
                 "through the target), shard-side handshakes as bench/shard_observer.py saw them",
             f"   {'target':<22} {'kills':>6} {'handshakes':>11} {'resumed':>8} {'full':>5} "
             f"{'resumed %':>10}  versions"]
    for n, r in res.items():
        if "error" in r:
            lines.append(f"   {n:<22} error: {r['error'][:200]}")
            continue
        extra = []
        if r.get("failed_handshakes"):
            extra.append(f"{r['failed_handshakes']} failed handshakes")
        if r.get("rounds_without_reconnect"):
            extra.append(f"{r['rounds_without_reconnect']} kills with no new handshake in time")
        lines.append(f"   {n:<22} {r['reconnects']:>6} {r['handshakes']:>11} {r['resumed']:>8} "
                     f"{r['full']:>5} {100 * r['resumed_frac']:>9.1f}%  "
                     f"{','.join(v or '?' for v in r['versions'])}"
                     + (f"  ({'; '.join(extra)})" if extra else ""))
    return "\n".join(lines)


def check_mtls(summary: dict, resume: dict) -> list[dict]:
    """Issue 16's targets: shardgate-mtls-mux's CPU per request at P16 against
    haproxy-mtls's, and the share of shard reconnects resumed, for every
    shardgate row that speaks TLS to the shard."""
    checks = []
    peer = "haproxy-mtls"
    for pl in (16,):
        wl = f"mtls_getset_p{pl}"
        sg, pv = _med(summary, wl, "cpu_us_per_req", "shardgate-mtls-mux"), \
            _med(summary, wl, "cpu_us_per_req", peer)
        desc = f"mTLS: proxy CPU/request P{pl} shardgate-mtls-mux <= 0.6x haproxy-mtls"
        if sg is None or pv is None:
            checks.append({"target": desc, "status": "n/a", "detail": "not measured"})
            continue
        others = "; ".join(
            f"{n} {_num(v)} ({v / pv:.3f})" for n in ("shardgate-mtls-mux-1w", "shardgate-mtls",
                                                     "shardgate-mtls-1w")
            if (v := _med(summary, wl, "cpu_us_per_req", n)) is not None)
        checks.append({"target": desc, "status": "PASS" if sg <= 0.6 * pv else "FAIL",
                       "detail": f"{_num(sg)} vs {_num(pv)} µs (ratio {sg / pv:.3f}, "
                                 f"need <= 0.6)" + (f" [{others}]" if others else "")})
    rows = [n for n in BY_NAME if n.startswith("shardgate-mtls") or n == "shard-tls"]
    measured = {n: resume[n] for n in rows if n in resume}
    desc = "mTLS: >= 90% of shard reconnects resumed (every shardgate row)"
    if not measured:
        checks.append({"target": desc, "status": "n/a", "detail": "not measured"})
    else:
        ok = all("error" not in r and r["handshakes"] >= r["reconnects"]
                 and r["resumed_frac"] >= 0.9 for r in measured.values())
        detail = "; ".join(
            f"{n}: error" if "error" in r else
            f"{n} {r['resumed']}/{r['handshakes']} ({100 * r['resumed_frac']:.0f}%)"
            for n, r in measured.items())
        peers = "; ".join(f"{n} {r['resumed']}/{r['handshakes']}"
                          for n, r in resume.items() if n not in rows and "error" not in r)
        checks.append({"target": desc, "status": "PASS" if ok else "FAIL",
                       "detail": detail + (f" [peers: {peers}]" if peers else "")})
    return checks


def format_mtls_checks(checks: list[dict]) -> str:
    if not checks:
        return ""
    w = max(len(c["target"]) for c in checks)
    lines = ["", "== Issue 16 targets (mTLS on the client side, TLS to the shard)"]
    for c in checks:
        lines.append(f"   {c['status']:<5} {c['target']:<{w}}  {c['detail']}")
    return "\n".join(lines)


def cluster_tables(summary: dict, target_order: list[str]) -> str:
    """The cluster tables: ratios to direct-cluster-tls."""
    lines: list[str] = []
    for wl_name, (title, figures) in CLUSTER_WORKLOADS.items():
        wl = summary.get(wl_name)
        if not wl:
            continue
        lines += ["", f"== {title}",
                  f"   median over rounds [min–max]; ×direct = ratio to {CLUSTER_DIRECT} "
                  "(redis-benchmark --cluster --tls at the nodes' TLS ports)",
                  "   proxy CPU: shardgate's own process; for direct-cluster-tls the nodes "
                  "(all 6). nodes' CPU: all 6 redis-servers during the run"]
        head = f"   {'figure':<26} {'target':<22} {'median':>12} {'[min–max]':>25} {'×direct':>8}"
        lines += [head, "   " + "-" * (len(head) - 3)]
        for fig in figures:
            per = wl.get(fig.key, {})
            for t in target_order:
                if t not in per:
                    continue
                st = per[t]
                rng = f"[{st['min']:{fig.fmt}}–{st['max']:{fig.fmt}}]"
                ratio = "" if not fig.compare else _ratio(
                    st["median"], per.get(CLUSTER_DIRECT, {}).get("median"))
                lines.append(f"   {fig.label:<26} {t:<22} {st['median']:>12{fig.fmt}} "
                             f"{rng:>25} {ratio:>8}")
            lines.append("")
    return "\n".join(lines)


def _load_line(label: str, r: dict) -> str:
    if "p99_ms" not in r:
        return f"   {label:<22} failed: exit {r.get('rc')} {r.get('first_errors')}"
    ov = (f", {r['overlap']} s of it during the {r['reshard_s']} s reshard"
          if "overlap" in r else "")
    v = r.get("verifier", {})
    return (f"   {label:<22} {r['rps']:>9,.0f} req/s  p50 {r['p50_ms']:.3f} ms  "
            f"p99 {r['p99_ms']:.3f} ms  max {r['max_ms']:.1f} ms  {r['wall_s']} s{ov}; "
            f"exit {r['rc']}, error lines {r['errors_shown']}"
            + (f"; verifier {v.get('ops', 0):,} commands, {v.get('errors')} errors"
               if v else "")
            + (f": {v['first_errors']}" if v.get("first_errors") else ""))


def format_reshard(rs: dict | None) -> str:
    if not rs:
        return ""
    lines = ["", "== Live reshard through shardgate-cluster (redis-cli --cluster reshard, "
                 "keys moved; load: redis-benchmark --tls -c 10 -P 1 SET then GET, and a "
                 "verifier: SET + GET checked one at a time on keys in the moving slots)"]
    if "error" in rs:
        return "\n".join(lines + [f"   error: {rs['error']}"])
    lines.append(f"   {rs['slots']} slots, {rs.get('keys_moved', 0):,} keys moved each time "
                 f"({rs.get('keys_total', 0):,} keys in the cluster); reshard with no load "
                 f"{rs.get('reshard_alone_s')} s (CPU: redis-cli {rs.get('reshard_cli_cpu_s')} s, "
                 f"nodes {rs.get('reshard_nodes_cpu_s')} s); load n {rs.get('load_n_each', 0):,} SET "
                 f"+ n GET per phase")
    steady, during = rs.get("steady", []), rs.get("during", [])
    for i in range(max(len(steady), len(during))):
        if i < len(steady):
            lines.append(_load_line(f"steady {i + 1}", steady[i]))
        if i < len(during):
            lines.append(_load_line(f"during reshard {i + 1}", during[i]))
            if during[i].get("reshard_error"):
                lines.append(f"   reshard failed: {during[i]['reshard_error']}")
    ds, dd = rs.get("direct_steady", []), rs.get("direct_during", [])
    if ds or dd:
        lines.append("   control: the same load straight at the nodes (redis-benchmark --cluster "
                     "--tls -c 10, no verifier), each round after shardgate's")
        for i in range(max(len(ds), len(dd))):
            if i < len(ds):
                lines.append(_load_line(f"direct steady {i + 1}", ds[i]))
            if i < len(dd):
                lines.append(_load_line(f"direct during {i + 1}", dd[i]))
        pd = [r["p99_ms"] for r in dd if "p99_ms" in r]
        pst = [r["p99_ms"] for r in ds if "p99_ms" in r]
        if pd and pst:
            lines.append(f"   control median p99 during / steady: {statistics.median(pd):.3f} / "
                         f"{statistics.median(pst):.3f} ms = "
                         f"{statistics.median(pd) / statistics.median(pst):.2f}x")
    return "\n".join(lines)


def check_cluster(summary: dict, cl: dict) -> list[dict]:
    """Issue 17's targets: shardgate-cluster's requests/s at P16 against
    direct-cluster-tls's; p99 during a live reshard <= 2x steady, no errors."""
    checks = []
    wl = "cl_getset_p16"
    sg, d = _med(summary, wl, "rps", "shardgate-cluster"), _med(summary, wl, "rps", CLUSTER_DIRECT)
    desc = "cluster: requests/s P16 shardgate-cluster >= direct-cluster-tls"
    if sg is None or d is None:
        checks.append({"target": desc, "status": "n/a", "detail": "not measured"})
    else:
        others = "; ".join(f"{n} {v:,.0f} ({v / d:.2f}x)" for n in
                           ("shardgate-cluster-1w", "shardgate-cluster-tls")
                           if (v := _med(summary, wl, "rps", n)) is not None)
        checks.append({"target": desc, "status": "PASS" if sg >= d else "FAIL",
                       "detail": f"{sg:,.0f} vs {d:,.0f} ({sg / d:.2f}x)"
                                 + (f" [{others}]" if others else "")})
    rs = cl.get("reshard")
    desc = "cluster: p99 during a live reshard <= 2x steady p99, 0 errors"
    if not rs:
        checks.append({"target": desc, "status": "n/a", "detail": "not measured"})
        return checks
    during, steady = rs.get("during", []), rs.get("steady", [])
    p_during = [r["p99_ms"] for r in during if "p99_ms" in r]
    p_steady = [r["p99_ms"] for r in steady if "p99_ms" in r]
    if "error" in rs or not p_during or not p_steady:
        checks.append({"target": desc, "status": "FAIL",
                       "detail": rs.get("error") or "a load run failed"})
        return checks
    d_med, s_med = statistics.median(p_during), statistics.median(p_steady)
    bench_err = sum(r.get("errors_shown", 0) + (r.get("rc") != 0) for r in during)
    ver_err = sum(r.get("verifier", {}).get("errors", 1) for r in during)
    ver_ops = sum(r.get("verifier", {}).get("ops", 0) for r in during)
    resh_err = sum(bool(r.get("reshard_error")) for r in during)
    errors = bench_err + ver_err + resh_err + (len(during) < rs.get("rounds", 0))
    ok = d_med <= 2 * s_med and errors == 0
    checks.append({"target": desc, "status": "PASS" if ok else "FAIL",
                   "detail": f"median p99 {d_med:.3f} vs {s_med:.3f} ms "
                             f"({d_med / s_med:.2f}x, need <= 2; {len(during)} reshards, "
                             f"{len(steady)} steady runs); errors {errors} (redis-benchmark "
                             f"{bench_err}, verifier {ver_err} of {ver_ops:,} commands, "
                             f"reshard {resh_err})"})
    return checks


def format_cluster_checks(checks: list[dict]) -> str:
    if not checks:
        return ""
    w = max(len(c["target"]) for c in checks)
    lines = ["", "== Issue 17 targets (Redis Cluster backend)"]
    for c in checks:
        lines.append(f"   {c['status']:<5} {c['target']:<{w}}  {c['detail']}")
    return "\n".join(lines)
