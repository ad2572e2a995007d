"""Open Bandit Dataset, small version (Apache-2.0): real logs with display positions 1-3.

Protocol ``open-bandit-small``: train on the Bernoulli-Thompson-Sampling log (``bts/``, the last
day held out for validation), evaluate on the uniform-random log (``random/``), where position and
item are independent, so its click rate per position is an unbiased view of position bias.
The three campaigns are pooled; item ids are prefixed by campaign since each campaign numbers its
own items. From the wide ``user-item_affinity_*`` columns, the affinity of the shown item is kept.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from watchnext.data.datasets import bundled_path

PROTOCOL = "open-bandit-small"
CAMPAIGNS = ("all", "men", "women")
KEEP = ("timestamp", "position", "click", "propensity_score",
        "user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3")


def load_policy(policy: str) -> pa.Table:
    """One policy's log (``bts`` or ``random``), the three campaigns pooled."""
    return pa.concat_tables([_campaign(policy, c) for c in CAMPAIGNS])


def _campaign(policy: str, campaign: str) -> pa.Table:
    folder = bundled_path("open_bandit_small") / policy / campaign
    log = pq.read_table(folder / f"{campaign}.parquet")
    items = pq.read_table(folder / "item_context.parquet")
    item_ids = log["item_id"].to_numpy()
    affinity = np.stack([log[f"user-item_affinity_{i}"].to_numpy()
                         for i in range(items.num_rows)], axis=1)
    out = log.select(list(KEEP))
    out = out.append_column("item_id", pa.array([f"{campaign}:{i}" for i in item_ids]))
    out = out.append_column("affinity", pa.array(affinity[np.arange(len(item_ids)), item_ids]))
    out = out.append_column("campaign", pa.array([campaign] * log.num_rows))
    out = out.append_column("day", pc.strftime(log["timestamp"], "%Y-%m-%d"))
    lookup = {i: n for n, i in enumerate(items["item_id"].to_pylist())}
    rows = [lookup[i] for i in item_ids]
    for name in ("item_feature_0", "item_feature_1", "item_feature_2", "item_feature_3"):
        out = out.append_column(name, items[name].take(pa.array(rows)))
    return out.drop(["timestamp"])


def load_splits() -> dict[str, pa.Table]:
    bts = load_policy("bts")
    last_day = max(bts["day"].to_pylist())
    return {
        "train": bts.filter(pc.not_equal(bts["day"], last_day)),
        "valid": bts.filter(pc.equal(bts["day"], last_day)),
        "test": load_policy("random"),
    }


def click_rate_by_position(table: pa.Table) -> dict[int, dict[str, float]]:
    """Click rate and row count per position; on the random log this is the unbiased curve."""
    positions = table["position"].to_numpy()
    clicks = table["click"].to_numpy()
    return {int(p): {"click_rate": float(clicks[positions == p].mean()),
                     "rows": int((positions == p).sum())} for p in np.unique(positions)}
