"""DTOs for usage plans, subscriptions, usage reports and quota adjustments."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator, model_serializer, model_validator

from control_plane.schemas.common import InModel, Name, documented_pattern, not_null, path_template

Period = Literal["DAY", "WEEK", "MONTH"]
Rate = Annotated[float, Field(gt=0, le=1_000_000, description="requests per second (fractional allowed)")]
Burst = Annotated[int, Field(ge=1, le=1_000_000)]
ApiId = Annotated[str, Field(min_length=1, max_length=36)]


class ThrottleIn(InModel):
    rate: Rate
    burst: Burst = Field(description="bucket size: requests admitted at once before the rate applies")


class QuotaIn(InModel):
    limit: Annotated[int, Field(ge=1, le=10**12)] = Field(description="requests per period")
    period: Period = Field(description="DAY, WEEK or MONTH (UTC calendar periods, or the customer's billing cycle)")
    overage: Literal["deny", "allow"] = Field(
        default="deny",
        description="beyond the limit: deny (429) or allow (admitted and metered as overage, billed apart)",
    )
    hard_cap: Annotated[int, Field(ge=1, le=10**12)] | None = Field(
        default=None, description="with overage allow: requests in the period at which even overage stops (>= limit)"
    )

    @model_validator(mode="after")
    def _cap(self) -> QuotaIn:
        if self.hard_cap is not None:
            if self.overage != "allow":
                raise ValueError("hard_cap needs overage: allow")
            if self.hard_cap < self.limit:
                raise ValueError(f"hard_cap ({self.hard_cap}) is below the quota limit ({self.limit})")
        return self

    @model_serializer(mode="wrap")
    def _defaults_out(self, handler: Any) -> Any:
        out = handler(self)  # a quota without overage reads as before: {"limit", "period"}
        if isinstance(out, dict):
            if out.get("overage") == "deny":
                out.pop("overage")
            if out.get("hard_cap") is None:
                out.pop("hard_cap", None)
        return out


class RouteOverrideIn(InModel):
    """A throttle for one route (method + path template, as in the API's routes): its own bucket."""

    method: str = Field(description="HTTP method of the route", min_length=1, max_length=10)
    path: Annotated[str, documented_pattern(r"^/")] = Field(
        description="path template of the route, as in the API's routes", max_length=2048
    )
    rate: Rate
    burst: Burst = Field(description="bucket size: requests admitted at once before the rate applies")

    _check_path = field_validator("path")(path_template)

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str) -> str:
        from data_plane.snapshot import HTTP_METHODS

        if value.upper() not in HTTP_METHODS:
            raise ValueError(f"{value!r} is not an HTTP method")
        return value.upper()


class PlanApiIn(InModel):
    api_id: ApiId = Field(description="the API granted")
    overrides: list[RouteOverrideIn] = Field(
        description="per-route throttles (each its own bucket)", default_factory=list, max_length=50
    )

    @model_validator(mode="after")
    def _unique_overrides(self) -> PlanApiIn:
        seen = set()
        for o in self.overrides:
            if (o.method, o.path) in seen:
                raise ValueError(f"override {o.method} {o.path} is listed twice")
            seen.add((o.method, o.path))
        return self


def _unique_apis(apis: list[PlanApiIn] | None) -> list[PlanApiIn] | None:
    if apis is not None:
        ids = [a.api_id for a in apis]
        dup = next((a for a in ids if ids.count(a) > 1), None)
        if dup is not None:
            raise ValueError(f"api {dup!r} is listed twice")
    return apis


class PlanCreate(InModel):
    name: Name = Field(description="unique name of the plan")
    description: str = Field(description="what the plan is, for people", default="", max_length=1000)
    throttle: ThrottleIn | None = Field(
        default=None, description="plan-wide throttle (token bucket per customer); null: none"
    )
    quota: QuotaIn | None = Field(default=None, description="requests per period per customer; null: none")
    apis: list[PlanApiIn] = Field(
        description="the APIs the plan grants, with optional per-route throttles", default_factory=list, max_length=200
    )

    _check_apis = field_validator("apis")(_unique_apis)


class PlanUpdate(InModel):
    name: Name | None = Field(json_schema_extra=not_null, default=None, description="unique name of the plan")
    description: Annotated[str, Field(max_length=1000)] | None = Field(
        json_schema_extra=not_null, description="what the plan is, for people", default=None
    )
    throttle: ThrottleIn | None = Field(
        default=None, description="plan-wide throttle (token bucket per customer); null: none"
    )
    quota: QuotaIn | None = Field(default=None, description="requests per period per customer; null: none")
    apis: Annotated[list[PlanApiIn], Field(max_length=200)] | None = Field(
        json_schema_extra=not_null,
        description="the APIs the plan grants, with optional per-route throttles",
        default=None,
    )

    _check_apis = field_validator("apis")(_unique_apis)


class PlanPublic(BaseModel):
    id: str = Field(description="the resource's id (a UUID, assigned by the control plane)")
    name: str = Field(description="unique name of the plan")
    description: str = Field(description="what the plan is, for people")
    throttle: ThrottleIn | None = Field(description="plan-wide throttle (token bucket per customer); null: none")
    quota: QuotaIn | None = Field(description="requests per period per customer; null: none")
    apis: list[PlanApiIn] = Field(description="the APIs the plan grants, with optional per-route throttles")
    created_at: datetime = Field(description="when the resource was created (UTC)")
    updated_at: datetime = Field(description="when the resource was last changed (UTC)")


class SubscriptionIn(InModel):
    plan_id: str = Field(description="the usage plan", min_length=1, max_length=36)
    billing_anchor: datetime | None = Field(
        default=None,
        description="start of the billing cycle (ISO 8601 date-time; without an offset: a wall-clock time in"
        " time_zone): MONTH quotas reset on its day of month (the 31st: the month's last day), WEEK on its"
        " weekday, DAY at its time. Left out: unchanged; null: UTC calendar periods again",
    )
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA time zone of the cycle (e.g. Europe/Paris; default UTC). Left out: unchanged",
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ValueError, ZoneInfoNotFoundError):
                raise ValueError(f"unknown time zone {value!r}: an IANA name such as Europe/Paris") from None
        return value


class SubscriptionPublic(BaseModel):
    customer_id: str = Field(description="the customer")
    plan_id: str | None = Field(description="the plan subscribed to; null: none")
    plan_name: str | None = Field(description="that plan's name")
    billing_anchor: datetime | None = Field(
        default=None, description="start of the billing cycle, in time_zone; null: UTC calendar periods"
    )
    time_zone: str | None = Field(default=None, description="IANA time zone of the cycle; null: UTC")
    period_start: datetime | None = Field(default=None, description="the current quota period (its cycle)")
    period_end: datetime | None = Field(default=None, description="end of the current quota period (exclusive)")


# ---------------------------------------------------------------------------- usage


StatusClass = Literal["1xx", "2xx", "3xx", "4xx", "5xx"]


class UsageCountIn(BaseModel):
    """One count of a worker batch.  Workers before issue 17 send (customer, api, day); current ones
    add the route, the plan (null: none), the status class and the UTC hour it started in, with ``day``
    the hour's UTC day.  Unknown members are ignored, so a newer worker's additions do not break this."""

    customer_id: str = Field(description="the customer counted", min_length=1, max_length=36)
    api_id: str = Field(description="the API called", min_length=1, max_length=36)
    day: date | None = Field(default=None, description="UTC day; may be left out when hour is given")
    hour: datetime | None = Field(default=None, description="start of the UTC hour (a time without offset is UTC)")
    route_id: str = Field(description="the route matched (empty: unknown, older workers)", default="", max_length=36)
    plan_id: str | None = Field(description="the customer's plan when counted; null: none", default=None, max_length=36)
    status_class: StatusClass | None = Field(default=None, description="class of the response status")
    count: Annotated[int, Field(ge=1, le=10**12)] = Field(description="admitted requests")
    overage: Annotated[int, Field(ge=0, le=10**12)] = Field(
        default=0, description="of count: admitted beyond the plan's quota (an overage plan)"
    )

    @model_validator(mode="after")
    def _hour_and_day_agree(self) -> UsageCountIn:
        if self.overage > self.count:
            raise ValueError("overage cannot exceed count")
        if self.hour is None:
            if self.day is None:
                raise ValueError("day or hour is required")
            return self
        hour = self.hour.replace(tzinfo=UTC) if self.hour.tzinfo is None else self.hour.astimezone(UTC)
        if hour.minute or hour.second or hour.microsecond:
            raise ValueError("hour must be the start of an hour")
        if self.day is not None and self.day != hour.date():
            raise ValueError("day must be the UTC day of hour")
        self.hour, self.day = hour, hour.date()
        return self

    @property
    def utc_day(self) -> date:
        assert self.day is not None  # the validator fills it from hour
        return self.day


class RefusalCountIn(BaseModel):
    """Requests of one API the gateway answered itself with one status in one UTC hour (never billed)."""

    api_id: str = Field(min_length=1, max_length=36, description="the API the requests matched")
    status: int = Field(ge=400, le=599, description="the status the gateway answered (401, 403, 429, ...)")
    hour: datetime = Field(description="start of the UTC hour (a time without offset is UTC)")
    count: Annotated[int, Field(ge=1, le=10**12)] = Field(description="how many requests")

    @model_validator(mode="after")
    def _whole_hour(self) -> RefusalCountIn:
        hour = self.hour.replace(tzinfo=UTC) if self.hour.tzinfo is None else self.hour.astimezone(UTC)
        if hour.minute or hour.second or hour.microsecond:
            raise ValueError("hour must be the start of an hour")
        self.hour = hour
        return self


class UsageBatchIn(BaseModel):
    """One worker batch (data_plane/metering/meter.py); ``batch_id`` makes it idempotent."""

    batch_id: str = Field(
        description="unique per batch: a batch sent twice is counted once", min_length=1, max_length=64
    )
    node_id: str = Field(description="the worker that sent it", default="", max_length=128)
    counts: list[UsageCountIn] = Field(description="the counts", max_length=200_000)
    refusals: list[RefusalCountIn] = Field(
        default=[], max_length=100_000, description="requests the gateway answered itself, per API, status and hour"
    )


class UsageBatchResult(BaseModel):
    batch_id: str = Field(description="the batch")
    applied: bool = Field(description="false: this batch id was applied before; nothing was added")


class UsageDay(BaseModel):
    day: date = Field(description="the UTC day")
    requests: int = Field(description="admitted requests that day")
    overage: int = Field(default=0, description="of requests: admitted beyond the quota (overage plans), billed apart")
    apis: dict[str, int] = Field(description="requests per api id")
    quota_remaining: int | None = Field(description="for the period containing this day; null: no quota")


class CustomerUsage(BaseModel):
    customer_id: str = Field(description="the customer")
    customer_name: str = Field(description="the customer's name")
    plan_id: str | None = Field(description="the customer's plan; null: none")
    quota: QuotaIn | None = Field(description="the plan's quota; null: none")
    days: list[UsageDay] = Field(description="one entry per day of the range")


class PlanUsage(BaseModel):
    plan_id: str = Field(description="the plan")
    start: date = Field(description="first day of the report (UTC, inclusive)")
    end: date = Field(description="last day of the report (UTC, inclusive)")
    customers: list[CustomerUsage] = Field(description="the plan's current subscribers")


class AdjustIn(InModel):
    extra: Annotated[int, Field(ge=-(10**12), le=10**12, description="added to this period's extra quota")]


class RemainingIn(InModel):
    remaining: Annotated[int, Field(ge=0, le=10**12, description="what is left of this period's quota afterwards")]


class AdjustPublic(BaseModel):
    customer_id: str = Field(description="the customer")
    period: Period = Field(description="DAY, WEEK or MONTH (UTC calendar periods, or the customer's billing cycle)")
    period_start: date = Field(description="start of the current quota period")
    period_end: date = Field(description="end of the current quota period (exclusive)")
    extra: int = Field(description="total extra quota for this period")
    limit: int = Field(description="plan limit + extra")


class RemainingPublic(AdjustPublic):
    used: int = Field(description="requests reported for this period on the plan's APIs")
    remaining: int = Field(description="limit - used")
