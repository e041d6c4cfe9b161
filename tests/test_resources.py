"""/stats/ memory figures from cgroup v2, cgroup v1 and plain psutil; never an exception."""
from drum_compat.shared.resources import ResourceMonitor, container_memory

MB = 1024 * 1024


def test_cgroup_v2(tmp_path):
    (tmp_path / "memory.current").write_text(str(100 * MB))
    (tmp_path / "memory.max").write_text(str(400 * MB))
    (tmp_path / "memory.peak").write_text(str(150 * MB))
    stats = ResourceMonitor(cgroup_root=str(tmp_path)).collect()["mem_info"]
    assert (stats["container_limit"], stats["container_used"], stats["container_max_used"], stats["avail"]) == (400, 100, 150, 300)


def test_cgroup_v2_unlimited_and_v1(tmp_path):
    (tmp_path / "memory.current").write_text("5")
    (tmp_path / "memory.max").write_text("max")
    assert container_memory(str(tmp_path))["limit"] is None
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.usage_in_bytes").write_text(str(10 * MB))
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(1 << 62))
    (v1 / "memory" / "memory.max_usage_in_bytes").write_text("garbage")
    assert container_memory(str(v1)) == {"limit": None, "used": 10 * MB, "max_used": None}


def test_no_cgroup_uses_psutil(tmp_path):
    stats = ResourceMonitor(cgroup_root=str(tmp_path / "absent")).collect()
    assert stats["mem_info"]["container_limit"] is None and stats["mem_info"]["total"] > 0
    assert stats["drum_info"][0]["mem"] > 0 and stats["mem_info"]["drum_rss"] == stats["drum_info"][0]["mem"]
