"""The base of every config section; stage packages define their sections on it."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """A config section: unknown keys are errors, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A job queued (pickled) by an older version of the package lacks the fields added since;
        # they take their defaults, as reading the same config file with this version would give.
        values = state.get("__dict__", {})
        for name, field in type(self).model_fields.items():
            if name not in values and not field.is_required():
                values[name] = field.get_default(call_default_factory=True, validated_data=values)
        super().__setstate__(state)

    def operational_now(self) -> tuple[str, ...]:
        """Fields that this section's other values keep from changing any result (``synth.model.batch_size``
        once ``batch_invariant`` is on): left out of the run's identity, as ``operational`` ones are."""
        return ()


def operational(default: Any, **kwargs: Any) -> Any:
    """A field that changes how a stage runs but never its results (checkpoint cadence, loader
    workers): left out of the run's identity, so it can change between a run and its resume."""
    return Field(default, json_schema_extra={"operational": True}, **kwargs)


def output_choice(default: Any, **kwargs: Any) -> Any:
    """A field that picks which output a command writes, never what any output holds (``federate.init``:
    GPT-FL into ``RUN/federate`` or from scratch into ``RUN/federate-scratch``): the run's identity
    always records its default, so both outputs belong to one run directory."""
    return Field(default, json_schema_extra={"output_choice": True}, **kwargs)


def added(default: Any, **kwargs: Any) -> Any:
    """A field added after runs were started: left out of the run's identity while it holds its
    default, so that a run started before the field existed keeps its hash and still resumes."""
    return Field(default, json_schema_extra={"identity_without_default": True}, **kwargs)


def is_added_at_default(model: BaseModel, name: str) -> bool:
    field = type(model).model_fields[name]
    return _marked(type(model), name, "identity_without_default") and getattr(model, name) == field.default


def is_operational(model: type[BaseModel], name: str) -> bool:
    return _marked(model, name, "operational")


def is_output_choice(model: type[BaseModel], name: str) -> bool:
    return _marked(model, name, "output_choice")


def _marked(model: type[BaseModel], name: str, flag: str) -> bool:
    extra = model.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get(flag))
