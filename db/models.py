"""The database schema: SQLAlchemy 2.0 typed declarative models.

One row per thing the node handles, from received instances to delivered results (see ``docs/database.md``):

    Study 1-n Series 1-n Instance            what arrived (the spool holds the bytes)
    StoreRefusal                             a C-STORE the SCP refused: when, its status and reason
                 Series 1-n Job              one analysis attempt chain of a series
                            Job 1-n StructureMeasurement, GroupResult, Output
                                                   Output 1-n Delivery (the outbox)
    PatientHeight                            the height registry (heights for SMI)
    Event                                    an audit trail of what happened, without patient data
    WebUser                                  who may sign in to the QA web console

Conventions:

* enumerations are stored as their string values in ``VARCHAR`` columns with a ``CHECK`` constraint (no native
  database enum types, so SQLite and PostgreSQL behave alike and a value can be added by one migration);
* every timestamp is timezone-aware UTC (`UTCDateTime`); naive datetimes are refused;
* children are deleted with their parent (``ON DELETE CASCADE``), except events, which outlive what they describe
  (their links become ``NULL``);
* constraint and index names follow `NAMING_CONVENTION`, so migrations can name them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The values stored in these columns are the measurement's own enums: one source of truth.
from sarcoscreen.inference.catalogue import Side
from sarcoscreen.inference.height import HeightSource
from sarcoscreen.inference.measure import Classification, Completeness

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "Classification",
    "Completeness",
    "Delivery",
    "DeliveryStatus",
    "Event",
    "EventLevel",
    "GroupResult",
    "GroupSide",
    "HeightSource",
    "Instance",
    "InstanceState",
    "Job",
    "JobStatus",
    "Output",
    "OutputKind",
    "PatientHeight",
    "Series",
    "SeriesState",
    "StoreRefusal",
    "StructureMeasurement",
    "StructureSide",
    "Study",
    "UTCDateTime",
    "WebUser",
    "utcnow",
]

NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}

UID = 64
"""Length of a DICOM UID (PS3.5 9.1)."""
AE_TITLE = 16
PATH = 1024
SHA256_HEX = 64


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware (UTC), on SQLite as on PostgreSQL.

    SQLite has no time zones: values are converted to UTC before they are stored, and read back as UTC.
    A naive datetime is refused (it would be ambiguous).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _string_enum(enum: type[StrEnum], name: str, length: int = 16) -> Enum:
    """A `StrEnum` stored as its values in ``VARCHAR(length)`` with a CHECK constraint ``ck_<table>_<name>``."""
    return Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# --- enumerations -------------------------------------------------------------------------------------------


class SeriesState(StrEnum):
    """Where a series is on its way through the node; the transitions are `sarcoscreen.db.series_state`."""

    RECEIVING = "receiving"
    """Instances are arriving (or arrived after a decision); not yet idle for ``network.stable_age_s``. A series
    idle that long is decided in the same transaction, so no state lies between this and the decision (revision
    0007 dropped ``stable``)."""
    QUEUED = "queued"
    """The routing rules accepted it; a job is queued or running."""
    SKIPPED = "skipped"
    """The routing rules or the worker's gluteal check refused it, or its job was cancelled; ``skip_reason`` says
    why."""
    PROCESSED = "processed"
    """The latest job finished."""
    FAILED = "failed"
    """The latest job failed for good."""


class InstanceState(StrEnum):
    STORED = "stored"
    """The file is in the spool, as received."""
    MISSING_FILE = "missing file"
    """The start-up reconciliation did not find the spool file."""
    CHANGED_FILE = "changed file"
    """The spool file's SHA-256 no longer matches the one recorded on receipt."""
    PURGED = "purged"
    """The retention period ended and the spool file was deleted (``storage.retention_days``); the row stays for the
    record (0003). Receiving the instance again stores it again."""


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


StructureSide = Side
"""A structure's side: the catalogue's `Side` (right, left, midline)."""


class GroupSide(StrEnum):
    LEFT = "left"
    RIGHT = "right"
    BOTH = "both"


class OutputKind(StrEnum):
    SEG = "SEG"
    SR = "SR"
    KEY_IMAGE = "KEY_IMAGE"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    """Not yet accepted by the destination; retried from ``next_attempt_at``."""
    SENT = "sent"
    """The destination answered the C-STORE with success or a warning."""
    FAILED = "failed"
    """Given up: ``delivery.max_attempts`` reached (``sarcoscreen jobs retry`` sends it again)."""
    CANCELLED = "cancelled"
    """Not to be sent: a newer job of the same series superseded it, or a user cancelled the job (0002)."""


class EventLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


# --- what arrived -------------------------------------------------------------------------------------------


class Study(Base):
    """One DICOM study from which at least one instance was received.

    Holds the patient attributes the node needs: the patient ID (to join the height registry and for QA staff,
    never logged), the sex (cut-offs are sex-specific) and PatientSize exactly as recorded (it may be in
    centimetres or zero; the measurement decides whether it is plausible).
    """

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(UID), unique=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    accession_number: Mapped[str | None] = mapped_column(String(64))
    study_date: Mapped[date | None] = mapped_column(Date)
    study_description: Mapped[str | None] = mapped_column(String(256))
    patient_sex: Mapped[str | None] = mapped_column(String(16))
    """PatientSex (0010,0040) as recorded: M, F, O or empty."""
    patient_size_recorded: Mapped[float | None] = mapped_column(Float)
    """PatientSize (0010,1020) as recorded (metres by the standard; not validated here)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    series: Mapped[list[Series]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True
    )


class Series(Base):
    """One DICOM series being received or received, with its state on the way to a result."""

    __tablename__ = "series"
    __table_args__ = (Index(None, "state", "last_received_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(UID), unique=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    series_description: Mapped[str | None] = mapped_column(String(256))
    body_part: Mapped[str | None] = mapped_column(String(64))
    slice_thickness_mm: Mapped[float | None] = mapped_column(Float)
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    """Instances indexed for this series (duplicates of a SOP Instance UID count once)."""
    first_received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    """When the latest instance arrived: the series is stable once this is ``stable_age_s`` in the past."""
    state: Mapped[SeriesState] = mapped_column(_string_enum(SeriesState, "state"), default=SeriesState.RECEIVING)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    """Why the routing rules refused the series (state ``skipped``)."""

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(
        back_populates="series", cascade="all, delete-orphan", passive_deletes=True
    )
    jobs: Mapped[list[Job]] = relationship(back_populates="series", cascade="all, delete-orphan", passive_deletes=True)


class Instance(Base):
    """One received SOP instance: where its file is in the spool and what was received.

    The spool file is the truth; this row indexes it. ``frames``, ``image_type`` and ``axial`` are kept so the
    routing rules can judge a series without re-reading its files.
    """

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(UID), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(UID))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(UID))
    spool_path: Mapped[str] = mapped_column(String(PATH))
    """Path of the file relative to the spool folder."""
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    calling_ae_title: Mapped[str | None] = mapped_column(String(AE_TITLE))
    frames: Mapped[int] = mapped_column(Integer, default=1)
    image_type: Mapped[str | None] = mapped_column(String(256))
    """ImageType (0008,0008) values joined by a backslash, as in the file."""
    axial: Mapped[bool] = mapped_column(default=True)
    state: Mapped[InstanceState] = mapped_column(
        _string_enum(InstanceState, "state"), default=InstanceState.STORED
    )

    series: Mapped[Series] = relationship(back_populates="instances")


class StoreRefusal(Base):
    """One C-STORE the SCP refused (0009): when, the DIMSE status it answered and why, and who sent it.

    A refused instance leaves no ``instances`` row (some are quarantined, others - a full disk, an unavailable
    database - are only refused), so this row is what counts it (``sarcoscreen_instances_refused_total``). The
    reason is the one the SCP logs, scrubbed of DICOM values (`sarcoscreen.inference.error_text`): reasons in
    words and UIDs, never patient data.
    """

    __tablename__ = "store_refusals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    status: Mapped[int] = mapped_column(Integer)
    """The C-STORE failure status answered (PS3.4 Table B.2-1), e.g. 0xA700 out of resources."""
    reason: Mapped[str] = mapped_column(Text)
    calling_ae_title: Mapped[str | None] = mapped_column(String(AE_TITLE))


# --- work -----------------------------------------------------------------------------------------------------


class Job(Base):
    """One analysis of a series, claimed by a worker under a lease and retried with backoff.

    A worker owns a running job until ``lease_expires_at``; it renews the lease with each heartbeat. A job whose
    lease expired is back to be claimed (``attempts`` counts claims; after ``max_attempts`` it fails for good).
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index(None, "status", "next_attempt_at"),
        Index(None, "status", "lease_expires_at"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    status: Mapped[JobStatus] = mapped_column(_string_enum(JobStatus, "status"), default=JobStatus.QUEUED)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    """The worker holding the job (host name and process id)."""
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    """Not to be claimed before this time (backoff after a failed attempt)."""
    error: Mapped[str | None] = mapped_column(Text)
    """Why the latest attempt failed (no patient data)."""
    engine_name: Mapped[str | None] = mapped_column(String(64))
    engine_version: Mapped[str | None] = mapped_column(String(64))
    settings_hash: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    """Hash of the measurement-relevant settings; with the engine it makes the output UIDs."""
    reason: Mapped[str | None] = mapped_column(String(256))
    """Why the job was made: ``series stable``, ``late instances``, ``retry by user`` (0002)."""
    instance_count: Mapped[int | None] = mapped_column(Integer)
    """Instances of the series the worker loaded for this job (0002); later arrivals make a new job."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    step_seconds: Mapped[dict[str, float] | None] = mapped_column(JSON(none_as_null=True))
    """Seconds per step of the attempt that finished the job (``prepare``, ``load``, ``engine``, ``measure``,
    ``files``, ``dicom outputs``, ``store``), for the ``sarcoscreen_job_step_seconds`` histogram (0009); ``NULL``
    for jobs not done and jobs finished before 0009."""

    series: Mapped[Series] = relationship(back_populates="jobs")
    structures: Mapped[list[StructureMeasurement]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )
    groups: Mapped[list[GroupResult]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )
    outputs: Mapped[list[Output]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )


# --- results --------------------------------------------------------------------------------------------------


class StructureMeasurement(Base):
    """One catalogue structure measured by a job (`inference.measure.StructureMeasurement`)."""

    __tablename__ = "structure_measurements"
    __table_args__ = (
        UniqueConstraint("job_id", "structure_key"),
        # the results' QA filter: the few jobs with a structure above the uncertainty threshold (0010), without
        # reading every structure; the predicate is written as the ORM's ``qa_flag.is_(True)`` renders it, so that
        # both databases use the index for that condition
        Index("ix_structure_measurements_job_id_qa_flagged", "job_id",
              sqlite_where="qa_flag IS 1", postgresql_where="qa_flag IS true"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    structure_key: Mapped[str] = mapped_column(String(64))
    label: Mapped[int] = mapped_column(Integer)
    """The catalogue label value (persistent)."""
    name: Mapped[str] = mapped_column(String(128))
    side: Mapped[StructureSide] = mapped_column(_string_enum(StructureSide, "side"))
    voxels: Mapped[int] = mapped_column(BigInteger)
    volume_cm3: Mapped[float] = mapped_column(Float)
    mean_hu: Mapped[float | None] = mapped_column(Float)
    sd_hu: Mapped[float | None] = mapped_column(Float)
    fraction_in_window: Mapped[float | None] = mapped_column(Float)
    """Fraction of voxels inside the muscle HU window (lower: fattier muscle)."""
    mass_g: Mapped[float | None] = mapped_column(Float)
    """Mass of the structure's voxels: for a truncated structure, of its part inside the scan. Muscle only:
    ``NULL`` for a bone (0005; the density rule is muscle's density)."""
    truncated: Mapped[bool] = mapped_column()
    """The scan cuts the structure: it touches the first or last slice, or the engine says its extent reaches beyond
    the scan."""
    uncertainty: Mapped[float | None] = mapped_column(Float)
    qa_flag: Mapped[bool | None] = mapped_column()
    """The engine's uncertainty for this structure exceeds its threshold."""
    extent_uncertain: Mapped[bool | None] = mapped_column()
    """The engine is unsure where the structure begins or ends (a bounding landmark is uncertain) (0004; ``NULL`` in
    rows written before)."""
    shortfall_mm: Mapped[float | None] = mapped_column(Float)
    """For a truncated structure: how far its expected extent reaches beyond the scan, when the engine knows (0004)."""
    extent_note: Mapped[str | None] = mapped_column(Text)
    """The engine's words on the structure's extent when it is truncated or uncertain (0004)."""
    density_rule: Mapped[str] = mapped_column(String(256))
    """The density rule that turned volume into mass, as text."""

    job: Mapped[Job] = relationship(back_populates="structures")


class GroupResult(Base):
    """Mass and SMI of one muscle group on one side, measured by a job (`inference.measure.GroupMeasurement`).

    The screening of a group (`inference.measure.GroupScreening`) is stored on its ``both`` row: the value the
    side rule chose, the classification with its reason, the cut-off and the calibration that made it. The
    ``left`` and ``right`` rows leave those columns empty.
    """

    __tablename__ = "group_results"
    __table_args__ = (
        UniqueConstraint("job_id", "muscle_group", "side"),
        # the results' filters (0010): flagged (classification, side) and a group's completeness, QA (completeness,
        # side, group); each gives the jobs from the index alone
        Index(None, "classification", "side", "job_id"),
        Index(None, "completeness", "side", "muscle_group", "job_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    muscle_group: Mapped[str] = mapped_column(String(32))
    """A `Group` value: the reference study's ``gluteal``, ``above_knee``, ``all``, or sarcoscreen's own
    ``upper_gluteal`` (0004)."""
    side: Mapped[GroupSide] = mapped_column(_string_enum(GroupSide, "side"))
    completeness: Mapped[Completeness] = mapped_column(_string_enum(Completeness, "completeness", 32))
    reason: Mapped[str] = mapped_column(Text)
    smm_g: Mapped[float | None] = mapped_column(Float)
    """Skeletal muscle mass of the group (g); only when complete."""
    smi_kg_m2: Mapped[float | None] = mapped_column(Float)
    """SMM / height^2 (kg/m^2); only when complete and the height is known."""
    in_scan_smm_g: Mapped[float | None] = mapped_column(Float)
    """Mass of the group's muscle inside the scan (g) (0004): equal to ``smm_g`` when complete; for a truncated or
    uncertain group a lower bound, never the group's mass."""
    shortfall_mm: Mapped[float | None] = mapped_column(Float)
    """For a truncated group: how far the scan falls short of the group's whole extent (mm), when known (0004)."""
    screening_side_rule: Mapped[str | None] = mapped_column(String(16))
    screening_smi_kg_m2: Mapped[float | None] = mapped_column(Float)
    classification: Mapped[Classification | None] = mapped_column(_string_enum(Classification, "classification"))
    classification_reason: Mapped[str | None] = mapped_column(Text)
    cutoff_kg_m2: Mapped[float | None] = mapped_column(Float)
    calibration_name: Mapped[str | None] = mapped_column(String(256))
    calibration_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    height_m: Mapped[float | None] = mapped_column(Float)
    height_source: Mapped[HeightSource] = mapped_column(_string_enum(HeightSource, "height_source"))

    job: Mapped[Job] = relationship(back_populates="groups")


class Output(Base):
    """One DICOM object a job wrote (SEG, SR or key image), identified by its deterministic SOP Instance UID.

    A re-run with the same engine and settings makes the same UIDs, so the same UID may appear under several
    jobs of a series, but only once per job.
    """

    __tablename__ = "outputs"
    __table_args__ = (UniqueConstraint("job_id", "sop_instance_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[OutputKind] = mapped_column(_string_enum(OutputKind, "kind"))
    sop_class_uid: Mapped[str] = mapped_column(String(UID))
    sop_instance_uid: Mapped[str] = mapped_column(String(UID), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(UID))
    path: Mapped[str] = mapped_column(String(PATH))
    """Where the file is (under ``storage.outputs``)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When the file was deleted at the end of ``storage.outputs_retention_days`` (0003); ``None`` while it exists."""

    job: Mapped[Job] = relationship(back_populates="outputs")
    deliveries: Mapped[list[Delivery]] = relationship(
        back_populates="output", cascade="all, delete-orphan", passive_deletes=True
    )


class Delivery(Base):
    """The outbox: one output to be sent to one destination, with its retries.

    Written in the same transaction as the results, so nothing measured is forgotten; the sender picks
    ``pending`` rows whose ``next_attempt_at`` has passed.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("output_id", "destination_name"),
        Index(None, "status", "next_attempt_at"),
        # per destination: counts by status (queue, Health, /metrics) and the latest success (0010)
        Index(None, "destination_name", "status", "sent_at"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        CheckConstraint("port >= 1 AND port <= 65535", name="port_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    output_id: Mapped[int] = mapped_column(ForeignKey("outputs.id", ondelete="CASCADE"))
    destination_name: Mapped[str] = mapped_column(String(64))
    destination_ae_title: Mapped[str] = mapped_column(String(AE_TITLE))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    status: Mapped[DeliveryStatus] = mapped_column(
        _string_enum(DeliveryStatus, "status"), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    """The DIMSE status of the latest C-STORE (e.g. 0xA700), when there was a response."""
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When the outcome of the latest attempt was recorded (0009): with ``last_error`` set, when it last failed."""
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    output: Mapped[Output] = relationship(back_populates="deliveries")


# --- registry and audit ---------------------------------------------------------------------------------------


class PatientHeight(Base):
    """One body height of a patient from the site's registry (``sarcoscreen heights import``).

    At most one row per patient and measurement date, and at most one undated row per patient (a partial unique
    index: SQL treats NULL dates as distinct in the unique constraint).
    """

    __tablename__ = "patient_heights"
    __table_args__ = (
        UniqueConstraint("patient_id", "measured_on"),
        Index(
            "uq_patient_heights_patient_id_undated",
            "patient_id",
            unique=True,
            sqlite_where="measured_on IS NULL",
            postgresql_where="measured_on IS NULL",
        ),
        CheckConstraint("height_m > 0", name="height_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64))
    height_m: Mapped[float] = mapped_column(Float)
    measured_on: Mapped[date | None] = mapped_column(Date)
    source_file: Mapped[str | None] = mapped_column(String(PATH))
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Event(Base):
    """Something that happened (received, skipped, claimed, failed, sent...), for the audit trail.

    Messages carry UIDs, counts and reasons, never patient names, identifiers or birth dates.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    level: Mapped[EventLevel] = mapped_column(_string_enum(EventLevel, "level", 8), default=EventLevel.INFO)
    series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id", ondelete="SET NULL"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    """What happened, dotted: ``series.stable``, ``job.failed``, ``delivery.sent``..."""
    message: Mapped[str] = mapped_column(Text)


# --- the web console ------------------------------------------------------------------------------------------


class WebUser(Base):
    """Someone who may sign in to the QA web console (``sarcoscreen web user add``; `sarcoscreen.db.web_users`).

    Only an Argon2id hash of the password is stored (argon2-cffi's encoded form, with its parameters and salt).
    """

    __tablename__ = "web_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
