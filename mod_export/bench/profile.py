"""ONNX Runtime's profiler on the portable MoD graph: the share of kernel time in the routing ops (the nodes that
came from inlining MoDTopKGather/MoDScatter) and in the routers."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import onnx

from mod_export import output
from mod_export.backends.onnxrt.session import create_session
from mod_export.graph.queries import router_node_names


def routing_time_share(
    proto_portable: onnx.ModelProto, proto_plugin: onnx.ModelProto, feed: dict, threads: int, runs: int = 5
) -> dict:
    plugin_names = {n.name for n in proto_plugin.graph.node}
    labelled = onnx.ModelProto()
    labelled.CopyFrom(proto_portable)
    for i, node in enumerate(labelled.graph.node):  # inlined routing nodes may be unnamed: label them
        if not node.name or node.name not in plugin_names:
            node.name = f"modrouting_{i}"
    routers = router_node_names(proto_plugin)
    with output.scratch_dir() as tmp:
        session = create_session(
            labelled, providers=["CPUExecutionProvider"], threads=threads, profile_prefix=str(Path(tmp) / "prof")
        )
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")].split("/")[0]  # fused nodes keep their first node's name
        kind = "routing_ops" if name.startswith("modrouting_") else "routers" if name in routers else "rest"
        totals[kind] += e["dur"]
        totals[f"op:{e['args'].get('op_name')}"] += e["dur"]
    total = sum(totals[k] for k in ("routing_ops", "routers", "rest")) or 1
    top = {k[3:]: v / total for k, v in totals.most_common() if k.startswith("op:")}
    return {
        "routing_ops_share": totals["routing_ops"] / total,
        "routers_share": totals["routers"] / total,
        "top_ops": dict(list(top.items())[:8]),
    }
