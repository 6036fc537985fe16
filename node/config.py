"""sarcoscreen's configuration: one typed settings object, from a TOML file plus ``SARCOSCREEN_*`` overrides.

Precedence, lowest first: built-in defaults, the TOML file, environment variables, command-line options.

* The file is the one given by ``--config``, else ``$SARCOSCREEN_CONFIG``, else ``./sarcoscreen.toml`` when it
  exists; with none of them the embedded defaults apply (SQLite and local folders under ``./sarcoscreen-data``).
* An environment variable ``SARCOSCREEN_<SECTION>__<KEY>`` overrides ``[section] key``, e.g.
  ``SARCOSCREEN_DATABASE__URL=postgresql+psycopg://node@db/sarcoscreen``. Values are parsed as TOML values when
  they parse (numbers, booleans, arrays) and taken as strings otherwise.
* Relative paths in the file are relative to the file's folder; relative paths from the environment or the
  defaults are relative to the current directory.

Every value is validated when the settings are loaded; a bad value raises `ConfigError`, whose message names
each bad key, where it came from, and why.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sarcoscreen.inference.density import DensityKind
from sarcoscreen.inference.file_modes import FileModes, parse_mode
from sarcoscreen.inference.sides import SideRule
from sarcoscreen.node.ae_title import DEFAULT_AE_TITLE, InvalidAETitleError, check_ae_title

__all__ = [
    "ENV_PREFIX",
    "ConfigError",
    "DatabaseSettings",
    "DeliverySettings",
    "DestinationSettings",
    "EngineSettings",
    "LoggingSettings",
    "MeasurementSettings",
    "NetworkSettings",
    "OutputSettings",
    "QueueSettings",
    "RoutingSettings",
    "Settings",
    "StorageSettings",
    "UidSettings",
    "WebSettings",
    "WorkerSettings",
    "load_settings",
]

ENV_PREFIX = "SARCOSCREEN_"
DEFAULT_FILE_NAME = "sarcoscreen.toml"
DEFAULT_DATA_DIR = Path("sarcoscreen-data")

_LIST_SECTIONS = ("destinations",)
"""Top-level lists of tables ([[destinations]]); from the environment as one TOML array."""

_UID_ROOT = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def _ae_title(value: str) -> str:
    """An AE title setting, checked (`sarcoscreen.node.ae_title`; PS3.5 6.2) and without its padding spaces."""
    try:
        return check_ae_title(value)
    except InvalidAETitleError as exc:
        raise ValueError(f"the AE title {exc}") from None


AETitle = Annotated[str, AfterValidator(_ae_title)]


class ConfigError(Exception):
    """The configuration could not be read or a value in it is invalid."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DatabaseSettings(_Section):
    """Where results, the queue and the instance index live."""

    url: str = Field(
        default="",
        description="SQLAlchemy URL. Empty: a SQLite file <storage.data_dir>/sarcoscreen.db. PostgreSQL: "
        "postgresql+psycopg://user:password@host:5432/dbname",
    )
    migrate_on_start: bool = Field(default=True, description="Apply pending migrations when a command starts.")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value


class StorageSettings(_Section):
    """Local folders. The spool is the source of truth for received instances."""

    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="Parent of the folders below when they are empty.")
    spool_dir: Path | None = Field(default=None, description="Received instances (default <data_dir>/spool).")
    quarantine_dir: Path | None = Field(
        default=None,
        description="Instances that could not be accepted, with the reason (default <data_dir>/quarantine).",
    )
    output_dir: Path | None = Field(default=None, description="Written SEG/SR/key images (default <data_dir>/outputs).")
    min_free_mb: Annotated[int, Field(ge=0)] = Field(
        default=2048, description="Refuse new instances (status 0xA700) when less disk than this is free."
    )
    retention_days: Annotated[float, Field(ge=0)] = Field(
        default=30.0,
        description="Delete a series' spool files this many days after its last instance arrived, once it is "
        "processed, skipped or failed and no job of it is queued or running (the rows stay, marked 'purged'); "
        "0 keeps them for ever.",
    )
    outputs_retention_days: Annotated[float, Field(ge=0)] = Field(
        default=30.0,
        description="Delete a SEG/SR/key image file this many days after it was written, once every delivery of it "
        "was sent or cancelled; 0 keeps them for ever.",
    )
    retention_check_s: Annotated[float, Field(gt=0)] = Field(
        default=3600.0, description="How often 'serve'/'run' look for files whose retention period ended."
    )
    file_mode: str = Field(
        default="0600",
        description="Permission bits (quoted octal text) of every file the node creates: spool, quarantine, outputs, "
        "the SQLite database, the log. \"0640\" lets the group read (e.g. a backup account).",
    )
    dir_mode: str = Field(
        default="0700", description="Permission bits (quoted octal text) of every folder the node creates."
    )
    strict_modes: bool = Field(
        default=False,
        description="Refuse to start when a storage folder or file (the roots and their immediate children) has "
        "wider permissions than file_mode/dir_mode; otherwise each is logged as a warning with the fix.",
    )

    @field_validator("file_mode", "dir_mode", mode="before")
    @classmethod
    def _octal_mode(cls, value: object, info: ValidationInfo) -> str:
        if not isinstance(value, str):
            raise ValueError('write the mode as quoted octal text such as "0600" (a bare number is ambiguous)')
        mode = parse_mode(value)
        owner = 0o600 if info.field_name == "file_mode" else 0o700
        if mode & owner != owner:
            needs = "read and write" if info.field_name == "file_mode" else "read, write and enter"
            raise ValueError(f"{value!r}: the owner must be able to {needs} (at least {owner:04o})")
        return f"{mode:04o}"

    @property
    def modes(self) -> FileModes:
        """The permission bits of what the node creates."""
        return FileModes(file=parse_mode(self.file_mode), directory=parse_mode(self.dir_mode))

    @property
    def spool(self) -> Path:
        return self.spool_dir or self.data_dir / "spool"

    @property
    def quarantine(self) -> Path:
        return self.quarantine_dir or self.data_dir / "quarantine"

    @property
    def outputs(self) -> Path:
        return self.output_dir or self.data_dir / "outputs"


class EngineSettings(_Section):
    """Which segmentation engine runs and how."""

    name: str = Field(default="threshold", description="Segmentation engine: threshold | bayesian-unet.")
    muscle_hu_min: float = Field(default=-29.0, description="Lower bound of the skeletal-muscle HU window.")
    muscle_hu_max: float = Field(default=150.0, description="Upper bound of the skeletal-muscle HU window.")
    bundle_path: Path | None = Field(
        default=None, description="bayesian-unet: model bundle folder or archive (unset: the bundle shipped with "
        "sarcoscreen, when this installation has one)."
    )
    device: str = Field(default="auto", description="auto (CUDA when present, else CPU) | cpu | cuda | cuda:N.")
    mc_samples: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        default=None, description="bayesian-unet: Monte-Carlo dropout samples per slice (unset: the bundle's default)."
    )
    uncertainty: Literal["variance", "entropy"] = Field(
        default="variance", description="bayesian-unet: voxel uncertainty, predictive variance or entropy."
    )
    uncertainty_threshold: Annotated[float, Field(ge=0.0)] | None = Field(
        default=None,
        description="bayesian-unet: structures whose mean voxel uncertainty exceeds this get a QA flag (unset: the "
        "bundle's suggestion, when it is for the same measure).",
    )
    batch_images: Annotated[int, Field(ge=1, le=4096)] = Field(
        default=16, description="bayesian-unet: images per forward pass (slices x MC samples); bounds memory."
    )
    seed: Annotated[int, Field(ge=-1)] = Field(
        default=0, description="bayesian-unet: seed of the dropout masks, so a re-run gives the same result "
        "(-1: fresh masks every run)."
    )
    mixed_precision: bool = Field(default=True, description="bayesian-unet: float16 autocast on CUDA (not on CPU).")

    @field_validator("name")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        known = ("threshold", "bayesian-unet")
        if value not in known:
            raise ValueError(f"unknown engine {value!r}; known engines: {', '.join(known)}")
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value

    @model_validator(mode="after")
    def _window_ordered(self) -> Self:
        if not self.muscle_hu_min < self.muscle_hu_max:
            raise ValueError(
                f"muscle_hu_min ({self.muscle_hu_min}) must be below muscle_hu_max ({self.muscle_hu_max})"
            )
        if self.name == "bayesian-unet" and self.bundle_path is None:
            # unset means the bundle shipped in the package (inference/engines/unet/shipped_bundle.py): is there one?
            from sarcoscreen.inference.engines.unet.shipped_bundle import NoShippedBundleError, shipped_bundle_path

            try:
                shipped_bundle_path()
            except NoShippedBundleError as exc:
                raise ValueError(f"bundle_path is required for the bayesian-unet engine here: {exc}") from None
        return self


class MeasurementSettings(_Section):
    """How masses and SMI are computed and when a patient is flagged."""

    density: DensityKind = Field(default=DensityKind.CONSTANT, description="constant | hu_linear (1.0 + HU/1000).")
    density_g_per_cm3: Annotated[float, Field(ge=0.9, le=1.2)] = Field(
        default=1.04, description="Muscle density for the constant rule (1.04 or 1.06 g/cm3)."
    )
    exclude_outside_window: bool = Field(
        default=False, description="Count only voxels inside the muscle HU window towards mass."
    )
    side_rule: SideRule = Field(default=SideRule.MEAN, description="SMI used for screening: left|right|mean|min.")
    calibration_file: Path | None = Field(
        default=None,
        description="Cut-offs made by `sarcoscreen calibrate`. Without one no patient is flagged "
        "('not classified: no calibrated cut-off').",
    )


class UidSettings(_Section):
    """UIDs of the SEG, SR and key images sarcoscreen writes."""

    root: str = Field(
        default="2.25",
        description="UID root. Output UIDs are derived deterministically from (source series, engine, settings) "
        "under it; the default 2.25 makes UUID-derived UIDs (ISO/IEC 9834-8).",
    )

    @field_validator("root")
    @classmethod
    def _valid_root(cls, value: str) -> str:
        if not _UID_ROOT.match(value) or len(value) > 40:
            raise ValueError("must be a dotted-decimal UID prefix without leading zeros, at most 40 characters")
        return value


class OutputSettings(_Section):
    """DICOM outputs: the SEG, the TID 1500 SR and the key image (see docs/dicom-outputs.md)."""

    seg_type: Literal["binary", "labelmap"] = Field(
        default="binary",
        description="binary (Segmentation Storage, what every viewer reads) | labelmap (Label Map Segmentation "
        "Storage, 2024; smaller, needs recent viewers and archives).",
    )
    seg_compression: Literal["none", "rle", "jpeg2000"] = Field(
        default="none",
        description="Lossless compression of the SEG: none | jpeg2000 | rle (rle only with seg_type labelmap).",
    )
    seg_omit_empty_frames: bool = Field(
        default=True, description="Leave out SEG frames without any voxel of their segment (smaller files)."
    )
    key_image: Literal["secondary_capture", "pdf", "none"] = Field(
        default="secondary_capture", description="Key image: secondary_capture | pdf (Encapsulated PDF) | none."
    )
    burn_in_patient_name: bool = Field(
        default=False, description="Draw the patient's name into the key image (Burned In Annotation YES)."
    )

    @model_validator(mode="after")
    def _compression_fits(self) -> Self:
        if self.seg_type == "binary" and self.seg_compression == "rle":
            raise ValueError("seg_compression rle needs seg_type labelmap (BINARY frames are 1 bit: none or "
                             "jpeg2000)")
        return self


class NetworkSettings(_Section):
    """The DICOM network node (Storage SCP and Verification SCP)."""

    ae_title: AETitle = Field(default=DEFAULT_AE_TITLE, description="Our AE title (1-16 characters).")
    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(default=11112, description="DICOM port.")
    max_associations: Annotated[int, Field(ge=1)] = Field(default=20, description="Simultaneous associations.")
    max_pdu_bytes: Annotated[int, Field(ge=0)] = Field(default=0, description="Maximum PDU we receive (0 = unlimited).")
    require_called_ae_title: bool = Field(default=True, description="Reject associations not addressed to ae_title.")
    allowed_calling: list[str] = Field(
        default_factory=list,
        description='Allowed callers: "AET" or "AET@host" entries; empty allows any caller.',
    )
    tls_certificate: Path | None = Field(default=None, description="PEM server certificate: TLS when set.")
    tls_private_key: Path | None = Field(default=None, description="PEM private key of the server certificate.")
    tls_ca_certificates: Path | None = Field(default=None, description="PEM CA bundle for client certificates.")
    tls_require_client_certificate: bool = Field(default=False, description="Require a client certificate.")
    stable_age_s: Annotated[float, Field(gt=0)] = Field(
        default=60.0, description="A series idle this long is complete and goes to routing."
    )
    rerun_on_late_instances: bool = Field(
        default=True, description="Instances arriving after a job was made trigger a new job."
    )

    @field_validator("allowed_calling")
    @classmethod
    def _valid_callers(cls, values: list[str]) -> list[str]:
        callers = []
        for entry in values:
            aet, at, host = entry.partition("@")
            try:
                callers.append(check_ae_title(aet) + at + host)
            except InvalidAETitleError as exc:
                raise ValueError(f"entry {entry!r}: the AE title {exc}") from None
        return callers

    @model_validator(mode="after")
    def _tls_complete(self) -> Self:
        if (self.tls_certificate is None) != (self.tls_private_key is None):
            raise ValueError("tls_certificate and tls_private_key must be set together")
        if self.tls_require_client_certificate and self.tls_ca_certificates is None:
            raise ValueError("tls_require_client_certificate needs tls_ca_certificates")
        return self


class RoutingSettings(_Section):
    """Which stable series are analysed; the others are skipped with the reason stored (node/routing.py)."""

    min_slices: Annotated[int, Field(ge=1)] = Field(default=20, description="Fewest slices (frames) analysed.")
    max_slice_thickness_mm: Annotated[float, Field(gt=0)] = Field(
        default=5.0, description="Thicker slices are skipped.")
    include_body_parts: list[str] = Field(
        default_factory=list,
        description="When set, BodyPartExamined must match one of these shell patterns (an empty one passes).")
    exclude_body_parts: list[str] = Field(
        default_factory=lambda: ["HEAD", "BRAIN", "*CHEST*", "THORAX", "NECK"],
        description="BodyPartExamined patterns that are skipped (case-insensitive, * and ? wildcards).")
    include_descriptions: list[str] = Field(
        default_factory=list, description="When set, the study or series description must match one pattern.")
    exclude_descriptions: list[str] = Field(
        default_factory=lambda: ["*SCOUT*", "*TOPO*", "*LOCALIZER*", "*DOSE*", "*MIP*", "*MPR*"],
        description="Study or series description patterns that are skipped.")
    require_gluteal_region: bool = Field(
        default=True,
        description="Skip a series whose images do not reach the gluteal region (checked by the worker on the "
        "segmentation: no gluteal muscle voxel at all).")


class QueueSettings(_Section):
    """The job queue in SQL: leases, heartbeats, attempts and backoff (db/queue.py)."""

    lease_s: Annotated[float, Field(gt=0)] = Field(
        default=300.0, description="A claimed job is the worker's for this long; heartbeats renew it. A job whose "
        "worker died goes back to the queue when its lease expires.")
    heartbeat_s: Annotated[float, Field(gt=0)] = Field(
        default=30.0, description="How often a worker renews the lease of its running job (below lease_s).")
    max_attempts: Annotated[int, Field(ge=1)] = Field(
        default=3, description="Attempts per job; after the last failed one the job is failed with its error.")
    backoff_s: Annotated[float, Field(ge=0)] = Field(
        default=30.0, description="Wait before the 2nd attempt; doubled for each further attempt.")
    backoff_max_s: Annotated[float, Field(ge=0)] = Field(default=3600.0, description="Longest wait between attempts.")
    poll_s: Annotated[float, Field(gt=0)] = Field(
        default=2.0, description="How often idle workers, the series watcher and the sender look for work.")

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Self:
        if self.heartbeat_s >= self.lease_s:
            raise ValueError(f"heartbeat_s ({self.heartbeat_s:g}) must be below lease_s ({self.lease_s:g})")
        return self


class WorkerSettings(_Section):
    """Processing: `sarcoscreen worker` and the workers of `sarcoscreen run`."""

    concurrency: Annotated[int, Field(ge=1)] = Field(
        default=1, description="Worker processes (each runs one job at a time; with a GPU, one per GPU).")
    max_volume_mb: Annotated[int, Field(ge=1)] = Field(
        default=8192, description="Largest CT volume (its HU array, in MiB) a worker loads; a series whose header "
        "declares more fails at once, before anything is allocated.")


class DeliverySettings(_Section):
    """The outbox: sending SEG/SR/key images to the [[destinations]] by C-STORE (node/delivery.py)."""

    retry_s: Annotated[float, Field(ge=0)] = Field(
        default=10.0, description="Wait before the 2nd attempt of a delivery; doubled for each further attempt.")
    retry_max_s: Annotated[float, Field(ge=0)] = Field(default=600.0, description="Longest wait between attempts.")
    max_attempts: Annotated[int, Field(ge=0)] = Field(
        default=0, description="Attempts before a delivery is failed for good; 0 retries until it is accepted.")
    timeout_s: Annotated[float, Field(gt=0)] = Field(
        default=60.0, description="Network timeout of the association with a destination.")


class DestinationSettings(_Section):
    """A DICOM application entity that receives every output (SEG, SR, key image) by C-STORE."""

    name: str = Field(description="Short unique name (shown in `sarcoscreen jobs`, stored with each delivery).")
    ae_title: AETitle = Field(description="The destination's AE title (called AE title).")
    host: str = Field(description="Host name or address.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(description="DICOM port.")
    tls: bool = Field(default=False, description="Use TLS (PS3.15 Annex B) for this destination.")
    tls_ca_certificates: Path | None = Field(
        default=None, description="PEM CA bundle to verify the destination's certificate (system CAs when unset).")
    tls_certificate: Path | None = Field(default=None, description="PEM client certificate, when it asks for one.")
    tls_private_key: Path | None = Field(default=None, description="PEM private key of the client certificate.")
    tls_check_hostname: bool = Field(default=True, description="Check that the certificate names the host.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", value):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-'")
        return value

    @model_validator(mode="after")
    def _client_certificate_complete(self) -> Self:
        if (self.tls_certificate is None) != (self.tls_private_key is None):
            raise ValueError("tls_certificate and tls_private_key must be set together")
        return self


class WebSettings(_Section):
    """The QA web console (node/web/, docs/web-console.md): `sarcoscreen web`, or inside serve/run."""

    host: str = Field(default="127.0.0.1", description="Address the console listens on (loopback by default: put "
                      "a reverse proxy with TLS in front of it to reach it from elsewhere).")
    port: Annotated[int, Field(ge=0, le=65535)] = Field(default=8080, description="HTTP port (0: a free port).")
    enabled_in_serve: bool = Field(
        default=False, description="Also serve the console from `sarcoscreen serve` and `run` (same process).")
    trusted_user_header: str | None = Field(
        default=None,
        description="When set (e.g. \"X-Remote-User\"), a reverse proxy's authenticated user name in this request "
        "header signs the request in and the sign-in page is not used. Only safe when nothing but the proxy can "
        "reach host:port.")
    session_max_age_s: Annotated[int, Field(ge=60)] = Field(
        default=8 * 3600, description="A sign-in lasts this long (seconds; the signed session cookie's age).")
    secret_file: Path | None = Field(
        default=None, description="The key that signs session cookies (default <storage.data_dir>/web-secret; "
        "created with storage.file_mode holding a random key when missing).")

    @field_validator("trusted_user_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if not value:
            return None  # "" (the example file's placeholder) is unset
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}", value):
            raise ValueError("must be an HTTP header name: letters, digits and '-'")
        return value


class LoggingSettings(_Section):
    level: str = Field(default="INFO", description="DEBUG | INFO | WARNING | ERROR.")
    file: Path | None = Field(default=None, description="Also log to this file (rotated daily).")

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return upper


class Settings(_Section):
    """The effective configuration of one sarcoscreen process."""

    network: NetworkSettings = NetworkSettings()
    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    engine: EngineSettings = EngineSettings()
    measurement: MeasurementSettings = MeasurementSettings()
    uids: UidSettings = UidSettings()
    outputs: OutputSettings = OutputSettings()
    logging: LoggingSettings = LoggingSettings()
    routing: RoutingSettings = RoutingSettings()
    queue: QueueSettings = QueueSettings()
    worker: WorkerSettings = WorkerSettings()
    delivery: DeliverySettings = DeliverySettings()
    web: WebSettings = WebSettings()
    destinations: list[DestinationSettings] = Field(
        default_factory=list,
        description="Where outputs are sent: [[destinations]] tables (name, ae_title, host, port, tls...).")

    @field_validator("destinations")
    @classmethod
    def _unique_destination_names(cls, values: list[DestinationSettings]) -> list[DestinationSettings]:
        names = [d.name for d in values]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"destination names must be unique: {', '.join(duplicates)} repeated")
        return values

    @property
    def database_url(self) -> str:
        """The database URL, with the embedded SQLite default resolved."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.storage.data_dir / 'sarcoscreen.db').resolve()}"

    @property
    def web_secret_file(self) -> Path:
        """The file of the key that signs the web console's session cookies, with its default resolved."""
        return self.web.secret_file or self.storage.data_dir / "web-secret"


@dataclass(frozen=True)
class _Origin:
    """Where each dotted key's value came from, for error messages."""

    by_key: dict[str, str]

    def of(self, key: str) -> str:
        if key in self.by_key and "." in key:
            return self.by_key[key]
        # A whole-section error (a rule between keys): name where each of its set keys came from.
        section = key.split(".", 1)[0]
        sources = sorted({v for k, v in self.by_key.items() if k.startswith(f"{section}.")})
        if not sources and section in self.by_key:  # a list of tables ([[destinations]]) or a whole section
            return self.by_key[section]
        return ", ".join(sources) if sources else "default"


def _find_file(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"configuration file {explicit} does not exist")
        return explicit
    from_env = environ.get(f"{ENV_PREFIX}CONFIG")
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} (from {ENV_PREFIX}CONFIG) does not exist")
        return path
    default = Path(DEFAULT_FILE_NAME)
    return default if default.is_file() else None


def _parse_env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _env_overrides(environ: Mapping[str, str], origin: dict[str, str]) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or name == f"{ENV_PREFIX}CONFIG":
            continue
        if name.startswith(f"{ENV_PREFIX}TEST_"):
            continue  # settings of the test suite, not of the node
        rest = name[len(ENV_PREFIX):].lower()
        if rest in _LIST_SECTIONS:  # a whole list, as a TOML array: [{name = "PACS", ...}]
            overrides[rest] = _parse_env_value(text)  # type: ignore[assignment]
            origin[rest] = f"environment variable {name}"
            continue
        if "__" not in rest:
            raise ConfigError(
                f"environment variable {name}: expected {ENV_PREFIX}<SECTION>__<KEY>, e.g. "
                f"{ENV_PREFIX}DATABASE__URL"
            )
        section, key = rest.split("__", 1)
        overrides.setdefault(section, {})[key] = _parse_env_value(text)
        origin[f"{section}.{key}"] = f"environment variable {name}"
    return overrides


def _resolve_file_paths(data: dict[str, Any], base: Path) -> None:
    """Make relative paths in the file relative to the file's folder."""
    path_keys = {
        "storage": ("data_dir", "spool_dir", "quarantine_dir", "output_dir"),
        "engine": ("bundle_path",),
        "measurement": ("calibration_file",),
        "logging": ("file",),
        "network": ("tls_certificate", "tls_private_key", "tls_ca_certificates"),
        "web": ("secret_file",),
    }
    destination_paths = ("tls_ca_certificates", "tls_certificate", "tls_private_key")
    for destination in data.get("destinations", []) if isinstance(data.get("destinations"), list) else []:
        if isinstance(destination, dict):
            for key in destination_paths:
                value = destination.get(key)
                if isinstance(value, str) and value and not Path(value).is_absolute():
                    destination[key] = str(base / value)
    for section, keys in path_keys.items():
        values = data.get(section)
        if not isinstance(values, dict):
            continue
        for key in keys:
            value = values.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                values[key] = str(base / value)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, origin: _Origin) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        reason = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            reason = "unknown key (see `sarcoscreen config example` for the known keys)"
        lines.append(f"  {key}: {reason} [from {origin.of(key)}]")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(
    config_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Read and validate the effective settings.

    Parameters
    ----------
    config_file:
        Explicit TOML file (``--config``); otherwise ``$SARCOSCREEN_CONFIG`` or ``./sarcoscreen.toml``.
    environ:
        The environment to read ``SARCOSCREEN_*`` overrides from (default: `os.environ`).
    overrides:
        Values from command-line options, ``{"section": {"key": value}}``; they win over everything else.

    Raises
    ------
    ConfigError
        The file is missing or not valid TOML, or a value is invalid; the message names every bad key.
    """
    env = os.environ if environ is None else environ
    origin: dict[str, str] = {}
    data: dict[str, Any] = {}
    path = _find_file(config_file, env)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"configuration file {path} cannot be read: {exc.strerror}") from None
        _resolve_file_paths(data, path.parent)
        for section, values in data.items():
            keys = values if isinstance(values, dict) else {}
            origin[section] = f"file {path}"
            for key in keys:
                origin[f"{section}.{key}"] = f"file {path}"
    data = _merge(data, _env_overrides(env, origin))
    if overrides:
        for section, values in overrides.items():
            for key in values:
                origin[f"{section}.{key}"] = "command line"
        data = _merge(data, {section: dict(values) for section, values in overrides.items()})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, _Origin(origin))) from None
