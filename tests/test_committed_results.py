"""What the README says of the committed results must be what the results say."""

import json
import re

from conftest import REPO


def test_readme_split_table_matches_results_cpu_datasets_json():
    doc = json.loads((REPO / "results/cpu/datasets.json").read_text())
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| (asl_\w+) \| ([\d,]+)[^|]*\| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \(([\d.]+)%\) \| (\d+) \|$", readme, re.M)
    assert {r[0] for r in rows} == set(doc["datasets"])
    num = lambda s: int(s.replace(",", ""))
    for name, archive, train, val, test, left, pct, dist in rows:
        d = doc["datasets"][name]
        sp = d["splits"]
        assert num(archive) == sp["train"]["images"] + sp["validation"]["images"] + sp["test"]["images"] + d["left_out_by_guard_band"]["images"]
        assert (num(train), num(val), num(test)) == (sp["train"]["images"], sp["validation"]["images"], sp["test"]["images"])
        assert num(left) == d["left_out_by_guard_band"]["images"]
        assert float(pct) == round(100 * d["left_out_by_guard_band"]["fraction_of_usable"], 1)
        assert int(dist) == d["min_frame_distance"]["test_to_train_or_validation"]
