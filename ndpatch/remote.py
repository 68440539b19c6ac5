"""Sources in object storage and on web servers, read through GDAL's network file systems.

A dataset's ``file_name`` may be a URI (``s3://``, ``gs://``, ``az://``,
``http(s)://``) or a GDAL network path (``/vsis3/``, ``/vsigs/``, ``/vsiaz/``,
``/vsicurl/``, ...). :func:`gdal_path` turns a URI into the path GDAL opens;
GDAL then reads byte ranges (a window of a tiled GeoTIFF fetches the tiles
under it, not the object). Credentials come from where GDAL looks for them
(environment, ``~/.aws`` config and profile, GDAL config options): ndpatch
never handles them, and :func:`scrub` blanks their values in every ndpatch
error message (:data:`ndpatch.errors.MESSAGE_FILTERS`); :func:`display` drops
user names, passwords and query values from URLs shown in messages and sidecars.

The identity of a remote object (:func:`stat`) is its size and version tag
(ETag, else Last-Modified, else GDAL's mtime), from one request, remembered
per process: a rewritten object gets a new identity, and so a new cache key.
:func:`refresh` forgets what this process (and GDAL's own cache) knows of an
object, so that the next stat asks the server again; image records
(:mod:`ndpatch.record`) do that when they resolve an image, and at most every
:data:`RECHECK_SECONDS` while a sampler runs, so sampling costs no request
per sample.

Example:
    >>> gdal_path("s3://bucket/scenes/a.tif"), gdal_path("https://host/a.tif"), gdal_path("/data/a.tif")
    ('/vsis3/bucket/scenes/a.tif', '/vsicurl/https://host/a.tif', '/data/a.tif')
    >>> display("/vsicurl/https://user:pw@host/a.tif?X-Amz-Signature=abc&v=2")
    'https://host/a.tif?X-Amz-Signature=***&v=***'
    >>> is_remote("/vsis3/bucket/a.tif"), is_remote("/vsizip//vsis3/bucket/a.zip/b.tif"), is_remote("/vsimem/a")
    (True, True, False)
"""
from __future__ import annotations

import configparser
import dataclasses
import os
import posixpath
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from osgeo import gdal

from ndpatch import errors
from ndpatch.errors import SourceReadError

gdal.UseExceptions()

#: URI schemes and the GDAL file system prefix each maps to.
URI_PREFIXES = {"s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/", "http": "/vsicurl/", "https": "/vsicurl/"}
#: GDAL file systems that read over the network.
NETWORK_PREFIXES = ("/vsis3/", "/vsigs/", "/vsiaz/", "/vsiadls/", "/vsicurl/", "/vsioss/", "/vsiswift/",
                    "/vsiwebhdfs/", "/vsis3_streaming/", "/vsigs_streaming/", "/vsiaz_streaming/",
                    "/vsicurl_streaming/")
_URI = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://", re.IGNORECASE)
_NETWORK = re.compile("|".join(re.escape(prefix) for prefix in NETWORK_PREFIXES))
#: A live sampler asks the server whether a remote source changed at most this often (seconds),
#: per image (``$NDPATCH_REMOTE_RECHECK``).
RECHECK_SECONDS = float(os.environ.get("NDPATCH_REMOTE_RECHECK", "60"))
#: Configuration options (or environment variables) whose values are secrets.
SECRET_OPTIONS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GS_ACCESS_KEY_ID",
                  "GS_SECRET_ACCESS_KEY", "GS_OAUTH2_REFRESH_TOKEN", "GS_OAUTH2_CLIENT_SECRET",
                  "AZURE_STORAGE_ACCESS_KEY", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_SAS_TOKEN",
                  "AZURE_SAS", "OSS_ACCESS_KEY_ID", "OSS_SECRET_ACCESS_KEY", "SWIFT_AUTH_TOKEN", "SWIFT_KEY",
                  "GDAL_HTTP_USERPWD", "GDAL_HTTP_BEARER", "GDAL_HTTP_HEADERS")
#: Keys of an AWS shared credentials file whose values are secrets.
AWS_FILE_SECRETS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
#: Values shorter than this are not blanked (a short test key would blank that word everywhere).
MIN_SECRET = 8
_URL_QUERY = re.compile(r"(https?://[^\s?'\"`]+\?)([^\s'\"`()<>:,;]+)", re.IGNORECASE)  # a URL and its query
_QUERY_VALUE = re.compile(r"((?:^|&)[^=&]*=)[^&]*")  # key=value in a query: the value (a SAS token, a signature)


def is_uri(name: str) -> bool:
    """Whether a file name is a URI of a scheme ndpatch reads (``s3://``, ``gs://``, ``az://``, ``http(s)://``)."""
    match = _URI.match(name)
    return match is not None and match.group("scheme").lower() in URI_PREFIXES


def gdal_path(name: str) -> str:
    """The path GDAL opens for a file name: URIs become ``/vsis3/``, ``/vsigs/``, ``/vsiaz/``, ``/vsicurl/``."""
    match = _URI.match(name)
    if match is None or match.group("scheme").lower() not in URI_PREFIXES:
        return name
    scheme = match.group("scheme").lower()
    if scheme in ("http", "https"):
        return URI_PREFIXES[scheme] + name
    return URI_PREFIXES[scheme] + name[match.end():]


def is_remote(path: str) -> bool:
    """Whether GDAL reads ``path`` over the network (a network file system anywhere in a ``/vsi`` chain)."""
    return path.startswith("/vsi") and _NETWORK.search(path) is not None


def uri(path: str) -> str:
    """The URI of a GDAL network path (``/vsis3/b/k`` → ``s3://b/k``); other paths as given.

    Example:
        >>> uri("/vsis3/b/k.tif"), uri("/vsicurl/http://h/k.tif"), uri("/vsizip//vsis3/b/a.zip/k.tif")
        ('s3://b/k.tif', 'http://h/k.tif', '/vsizip//vsis3/b/a.zip/k.tif')
    """
    for scheme, prefix in (("s3", "/vsis3/"), ("gs", "/vsigs/"), ("az", "/vsiaz/")):
        if path.startswith(prefix):
            return f"{scheme}://{path[len(prefix):]}"
    if path.startswith("/vsicurl/") and _URI.match(path[len("/vsicurl/"):]):
        return path[len("/vsicurl/"):]
    return path


def display(path: str) -> str:
    """How a source is named in messages, sidecars and logs: its URI, without user, password or query values."""
    if not path.startswith("/vsi") and not _URI.match(path):
        return path
    name = uri(path)
    if not re.match(r"https?://", name, re.IGNORECASE):
        return name
    parts = urlsplit(name)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    query = "&".join(f"{key}=***" for key, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


# -- secrets ---------------------------------------------------------------------------------
def secrets() -> set[str]:
    """The credential values GDAL may use now: config options, environment, the AWS credentials file."""
    found = set()
    for name in SECRET_OPTIONS:
        for value in (gdal.GetConfigOption(name), os.environ.get(name)):
            if value:
                found.add(value)
    credentials = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser("~/.aws/credentials")
    if os.path.isfile(credentials):
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(credentials)
        except (configparser.Error, OSError, UnicodeDecodeError):
            return found
        for section in parser.sections():
            found |= {parser.get(section, key) for key in AWS_FILE_SECRETS if parser.get(section, key, fallback="")}
    return found


def scrub(text: str) -> str:
    """``text`` with every credential value (:func:`secrets`) and URL password blanked.

    Example:
        >>> os.environ["AWS_SECRET_ACCESS_KEY"] = "hunter2-secret"
        >>> scrub("signature by hunter2-secret failed for https://me:pw@host/a.tif")
        'signature by *** failed for https://***@host/a.tif'
        >>> scrub("`/vsicurl/https://host/a.tif?sv=2024&sig=s3cr3t' not recognized (https://h/b?k=v): gone")
        "`/vsicurl/https://host/a.tif?sv=***&sig=***' not recognized (https://h/b?k=***): gone"
        >>> del os.environ["AWS_SECRET_ACCESS_KEY"]
    """
    text = re.sub(r"(https?://)[^/@\s]+@", r"\1***@", text)
    text = _URL_QUERY.sub(lambda match: match.group(1) + _QUERY_VALUE.sub(r"\1***", match.group(2)), text)
    for secret in sorted(secrets(), key=len, reverse=True):
        if len(secret) >= MIN_SECRET:
            text = text.replace(secret, "***")
    return text


def redacted_repr(obj) -> str:
    """A dataclass's repr with each network path or URI shown as :func:`display` shows it.

    Example:
        >>> from ndpatch.cache.base import ImageSource
        >>> ImageSource(3, "/vsicurl/https://me:pw@host/a.tif?sig=abc")
        ImageSource(gid=3, path='https://host/a.tif?sig=***', channels=None, bundle_dpath=None)
    """
    def shown(value):
        if isinstance(value, str):
            return display(value) if is_remote(value) or is_uri(value) else value
        if isinstance(value, dict):
            return {shown(key): shown(item) for key, item in value.items()}
        return type(value)(map(shown, value)) if type(value) in (tuple, list) else value

    fields = ", ".join(f"{f.name}={shown(getattr(obj, f.name))!r}" for f in dataclasses.fields(obj) if f.repr)
    return f"{type(obj).__name__}({fields})"


# -- identity ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteStat:
    """What the server says of an object: size, and the tag that changes when it is rewritten."""

    size: int
    version: str  # 'etag:<ETag>', else 'modified:<Last-Modified>', else 'mtime:<seconds>'

    def identity(self) -> tuple[int, str]:
        return (self.size, self.version)


_stats: dict[str, RemoteStat | SourceReadError] = {}  # path -> what the server last said
os.register_at_fork(after_in_child=_stats.clear)


def stat(path: str, what: str | None = None) -> RemoteStat:
    """The object's size and version: remembered since the last :func:`refresh`, else asked (one request).

    A missing object, a refused request (access denied, bad credentials), a
    timeout or an unreachable server raises SourceReadError naming ``what`` and
    the object's URI; that answer is remembered too (a timeout is waited for
    once per resolution, not once per caller). Directories (a key prefix) are
    refused like local ones.
    """
    name = display(path)
    held = _stats.get(path)
    if held is None:
        try:
            held = _fetch(path, name)
        except SourceReadError as err:
            held = err
        _stats[path] = held
    if isinstance(held, SourceReadError):  # 'URI: reason', told as this caller names the object
        prefix = name if what is None else what if name in what else f"{what}: {name}"
        raise SourceReadError(prefix + held.args[0][len(name):])
    return held


def refresh(path: str) -> None:
    """Forget what this process knows of the object at ``path``: its stat, and what GDAL cached of it.

    GDAL's cached size and bytes of the object (and of its sidecars, names
    that start with its own) are dropped; the listing of its folder is kept
    (re-listing a prefix of many objects for each image would cost more than
    the images), and dropped only when that listing says the object is missing
    (:func:`_fetch`).
    """
    _stats.pop(path, None)
    gdal.VSICurlPartialClearCache(path)


def _head(path: str, what: str):
    """The object's response headers and its VSIStatL (None: missing or refused); a timeout raises."""
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # GDAL warns of each refused request: failure() explains
    gdal.VSIErrorReset()
    try:
        headers = gdal.GetFileMetadata(path, "HEADERS") or {}
        if not headers and _timed_out(gdal.VSIGetLastErrorMsg() or ""):  # waiting again would time out again
            raise reason(gdal.VSIGetLastErrorNo(), gdal.VSIGetLastErrorMsg(), path, what)
        info = gdal.VSIStatL(path, gdal.VSI_STAT_EXISTS_FLAG | gdal.VSI_STAT_NATURE_FLAG | gdal.VSI_STAT_SIZE_FLAG)
    except RuntimeError as err:
        raise SourceReadError(f"{what}: cannot stat it: {err}") from err
    finally:
        gdal.PopErrorHandler()
    return headers, info


def _fetch(path: str, what: str) -> RemoteStat:
    headers, info = _head(path, what)
    if info is None:  # perhaps an object added since GDAL listed its folder: list it again
        gdal.VSICurlPartialClearCache(posixpath.dirname(path))
        headers, info = _head(path, what)
    if info is None:
        raise failure(path, what)
    if info.IsDirectory():
        raise SourceReadError(f"{what}: a folder (a key prefix), not a raster object")
    headers = {key.lower(): value for key, value in headers.items()}
    if headers.get("etag"):
        version = "etag:" + headers["etag"].strip()
    elif headers.get("last-modified"):
        version = "modified:" + headers["last-modified"].strip()
    else:
        version = f"mtime:{int(info.mtime)}"
    return RemoteStat(size=int(info.size), version=version)


#: GDAL's VSI error numbers (cpl_vsi_error.h) that mean the credentials were refused.
_DENIED = {6: "access denied", 9: "invalid credentials", 10: "the request signature does not match"}


def failure(path: str, what: str) -> SourceReadError:
    """Why ``path`` cannot be read, asked again with GDAL's error reporting on (one more request)."""
    gdal.VSICurlPartialClearCache(path)  # GDAL remembers a failed stat, but not why
    gdal.VSIErrorReset()
    handle = None
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        handle = gdal.VSIFOpenExL(path, "rb", True)
    except RuntimeError:
        pass
    finally:
        gdal.PopErrorHandler()
        if handle is not None:
            gdal.VSIFCloseL(handle)
    return reason(gdal.VSIGetLastErrorNo(), gdal.VSIGetLastErrorMsg() or "", path, what)


def _timed_out(message: str) -> bool:
    return "timed out" in message.lower() or "timeout" in message.lower()


def reason(number: int, message: str, path: str, what: str) -> SourceReadError:
    """The SourceReadError for GDAL's VSI error ``number`` and ``message`` about ``path``."""
    message = scrub(message)
    name = display(path)
    what = what if name in what else f"{what}: {name}"
    lowered = message.lower()
    if number in _DENIED or "403" in message or "access denied" in lowered or "forbidden" in lowered:
        reason = _DENIED.get(number, "access denied")
        return SourceReadError(f"{what}: {reason} ({message or 'HTTP 403'}); check the credentials "
                               "GDAL uses (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws, "
                               "or the GS_/AZURE_ options: docs/scale.md)")
    if _timed_out(message):
        return SourceReadError(f"{what}: the request timed out ({message}); "
                               "GDAL_HTTP_TIMEOUT and GDAL_HTTP_MAX_RETRY set the limits")
    if number == 7:
        return SourceReadError(f"{what}: the bucket does not exist ({message})")
    if number == 0 or "404" in message or "does not exist" in lowered or "not found" in lowered:
        return SourceReadError(f"{what}: no such object (file does not exist)")
    return SourceReadError(f"{what}: cannot be read: {message}")


errors.MESSAGE_FILTERS.append(scrub)
