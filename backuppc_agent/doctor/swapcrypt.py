"""Is swap encrypted? ssh-agent never mlocks its keys, so they can be paged out.

Each area of /proc/swaps (read by metrics.swapread) is followed to a block
device in sysfs: dm-crypt (``dm/uuid`` CRYPT-*), or stacked on it (LVM on LUKS),
is encrypted; zram without a backing device never reaches a disk. A swap file is
judged by the device under its file system (/proc/self/mountinfo); where that
device is anonymous (btrfs, say) we cannot tell, and say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import paths
from backuppc_agent.metrics.swapread import SwapArea, SwapReader, unescape

#: what the kernel appends to the path of a swap file deleted while in use
DELETED = " (deleted)"
#: Bound on /proc/self/mountinfo; a sysfs attribute is a page.
PROCFS_MAX_BYTES = 4 << 20
SYSFS_MAX_BYTES = 4096


@dataclass(frozen=True)
class Encryption:
    """Whether one swap area is encrypted: True, False, or None (cannot tell)."""

    area: SwapArea
    encrypted: bool | None
    why: str


def is_crypt(sysfs: Path, name: str, depth: int = 0) -> bool:
    """True if block device ``name`` is dm-crypt or stacked on dm-crypt."""
    block = sysfs / "block" / name
    if paths.read_or_empty(block / "dm" / "uuid", SYSFS_MAX_BYTES).startswith("CRYPT-"):
        return True
    slaves = block / "slaves"
    if depth > 8 or not slaves.is_dir():
        return False
    return any(is_crypt(sysfs, slave.name, depth + 1) for slave in slaves.iterdir())


def device_name(sysfs: Path, dev_path: str) -> str | None:
    """The kernel name (sda2, dm-1) of a /dev path, or None if unknown."""
    name = Path(dev_path).name
    if dev_path.startswith("/dev/mapper/"):
        for dm_name in (sysfs / "block").glob("dm-*/dm/name"):
            if paths.read_or_empty(dm_name, SYSFS_MAX_BYTES).strip() == name:
                return dm_name.parent.parent.name
        return None
    return name if (sysfs / "class" / "block" / name).exists() else None


def mount_device(procfs: Path, file_path: str) -> str | None:
    """MAJOR:MINOR of the file system holding ``file_path`` (longest mount prefix)."""
    best: tuple[int, str] | None = None
    for line in paths.read_or_empty(procfs / "self" / "mountinfo", PROCFS_MAX_BYTES).splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        mount = unescape(fields[4])
        inside = file_path == mount or file_path.startswith(mount.rstrip("/") + "/")
        if inside and (best is None or len(mount) > best[0]):
            best = (len(mount), fields[2])
    return best[1] if best else None


def _name_of_dev(sysfs: Path, majmin: str) -> str | None:
    try:
        return (sysfs / "dev" / "block" / majmin).readlink().name
    except OSError:
        return None


def judge_device(sysfs: Path, area: SwapArea, name: str) -> Encryption:
    """Encrypted or not, for swap on (or a swap file over) block device ``name``."""
    if name.startswith("zram"):
        backing = paths.read_or_empty(sysfs / "block" / name / "backing_dev", SYSFS_MAX_BYTES)
        backing = backing.strip()
        if backing in ("", "none"):
            return Encryption(area, True, f"{name} is compressed RAM (zram), never written to disk")
        return Encryption(area, False, f"{name} writes back to {backing}")
    if is_crypt(sysfs, name):
        return Encryption(area, True, f"{name} is dm-crypt (or stacked on it)")
    return Encryption(area, False, f"{name} is not encrypted (no dm-crypt below it)")


def judge(area: SwapArea, procfs: Path, sysfs: Path) -> Encryption:
    """Whether one swap area is encrypted, judged by its device or its file system's."""
    path = area.device.removesuffix(DELETED)
    if area.type == "partition":
        name = device_name(sysfs, path)
        if name is None:
            return Encryption(area, None, f"cannot find the block device of {path} in {sysfs}")
        return judge_device(sysfs, area, name)
    majmin = mount_device(procfs, path)
    name = _name_of_dev(sysfs, majmin) if majmin and not majmin.startswith("0:") else None
    if name is None:
        why = f"the file system holding {path} (device {majmin or 'unknown'}) is encrypted"
        return Encryption(area, None, f"cannot tell whether {why}: check with lsblk")
    found = judge_device(sysfs, area, name)
    return Encryption(area, found.encrypted, f"swap file on {found.why}")


def check(
    procfs: Path, sysfs: Path, fail: Callable[[str], None] = lambda _: None
) -> list[Encryption] | None:
    """Judge every active swap area: [] means no swap, None that /proc/swaps is unreadable."""
    areas = SwapReader(procfs, fail).swaps()
    return None if areas is None else [judge(area, procfs, sysfs) for area in areas]
