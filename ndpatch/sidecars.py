"""The files GDAL may probe beside a raster when it opens it, checked before it does.

Opening ``scene.tif`` makes GDAL look for ``scene.tif.aux.xml``, ``scene.tif.ovr``,
``scene.tif.msk``, world files (``scene.tfw``, ``scene.wld``), ``scene.aux`` and a few
metadata files. If one of those names is a FIFO (or a device), GDAL's open blocks
forever reading it. :func:`refuse_special_sidecars` stats each candidate name
(about 40 ``stat`` calls, once per opened source) and refuses the source instead.
"""
import os
import stat

from ndpatch.errors import SourceReadError

#: Suffixes GDAL appends to the whole file name (``scene.tif`` -> ``scene.tif.ovr``).
FULL_NAME_SUFFIXES = (".aux.xml", ".ovr", ".msk", ".aux", "w")
#: Suffixes GDAL puts in place of the extension (``scene.tif`` -> ``scene.tfw``).
STEM_SUFFIXES = (".aux", ".aux.xml", ".ovr", ".msk", ".wld", ".prj", ".tab", ".hdr", ".rpb",
                 "_rpc.txt", ".imd", ".pvl", ".xml", ".j2w")


def sidecar_candidates(path: str) -> list[str]:
    """Names GDAL may open beside ``path``, in lower and upper case.

    Example:
        >>> names = sidecar_candidates("/data/scene.tif")
        >>> "/data/scene.tif.ovr" in names and "/data/scene.tfw" in names and "/data/SCENE.TFW" in names
        True
    """
    folder, base = os.path.split(path)
    stem, ext = os.path.splitext(base)
    suffixes = [base + suffix for suffix in FULL_NAME_SUFFIXES]
    suffixes += [stem + suffix for suffix in STEM_SUFFIXES]
    if len(ext) >= 3:   # world files: .tif -> .tfw, .png -> .pgw
        suffixes.append(f"{stem}.{ext[1]}{ext[-1]}w")
    names = {name for suffix in suffixes for name in (suffix, suffix.lower(), suffix.upper())}
    return sorted(os.path.join(folder, name) for name in names)


def refuse_special_sidecars(path: str, what: str) -> None:
    """Raise SourceReadError if GDAL would block on a pipe or device beside ``path``.

    Local paths only (``/vsi`` paths are left to GDAL). A missing or unreadable
    candidate is fine: GDAL skips it too.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.mkdtemp()
        >>> os.mkfifo(f"{tmp}/a.tif.ovr")
        >>> refuse_special_sidecars(f"{tmp}/a.tif", "image 1")
        Traceback (most recent call last):
        ndpatch.errors.SourceReadError: image 1: .../a.tif.ovr, a file GDAL reads beside the image, is a pipe or device (it would hang any reader); ndpatch refuses the source
    """
    if path.startswith("/vsi"):
        return
    for name in sidecar_candidates(path):
        try:
            mode = os.stat(name).st_mode
        except OSError:
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise SourceReadError(f"{what}: {name}, a file GDAL reads beside the image, is a pipe or "
                                  "device (it would hang any reader); ndpatch refuses the source")


def sidecar_states(path: str, what: str) -> dict[str, list[int]]:
    """``[size, mtime_ns, inode, ctime_ns]`` of each sidecar present beside local ``path``.

    Keyed by the suffix after ``path`` (``".msk"``) or by the file name
    (``"scene.tfw"``); a cache key that includes this changes when a sidecar
    GDAL reads (overviews, masks, world files, ``.aux.xml``) is added, edited or removed.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.mkdtemp()
        >>> _ = open(f"{tmp}/a.tif.msk", "w").write("m"); _ = open(f"{tmp}/a.tfw", "w").write("w")
        >>> sorted(sidecar_states(f"{tmp}/a.tif", "image 1"))
        ['.msk', 'a.tfw']
    """
    states = {}
    for name in sidecar_candidates(path):
        try:
            found = os.stat(name)
        except FileNotFoundError:
            continue
        except OSError as err:
            raise SourceReadError(f"{what}: cannot stat {name}: {err}") from err
        if stat.S_ISREG(found.st_mode):
            label = name[len(path):] if name.startswith(path) else os.path.basename(name)
            states[label] = [found.st_size, found.st_mtime_ns, found.st_ino, found.st_ctime_ns]
    return states
