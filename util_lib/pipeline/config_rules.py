"""The rules of config.yaml's values, in pydantic: :class:`Config`, a model per section, is
their one source. Each key has its exact type (no number taken for a string, no 1 for true)
and what else its values must be (ranges, choices, names that MLflow and W&B accept, step
names, an existing data file), with the text that says what is allowed (:class:`Rule`).

:func:`check_values` reads each key as :class:`~util_lib.pipeline.config_checks.Checker` does
(a missing or unresolvable value is named once, as such) and records every value that breaks
its rule as ``key=value: what is allowed``, with any key that no rule knows. The checks that
read something else (scikit-learn's rules for the model, the data file's columns and
classes, the artifact store, the log file) are :mod:`util_lib.pipeline.config`'s.

Imported when a configuration is checked, not with :mod:`util_lib.pipeline.config`: pydantic
takes about 0.1 s to import (the driver imports it with MLflow anyway, right after).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from util_lib.artifacts.backends import STORE_CHOICES
from util_lib.artifacts.interface import NAME_RULE, name_problem
from util_lib.pipeline.config_checks import ABSENT, STEPS, Checker, parse_steps
from util_lib.pipeline.config_data import file_url_problem
from util_lib.pipeline.config_model import GRID_SEARCH_KEYS, is_scorer, moved_problem
from util_lib.step.arguments import optional

# mlflow.utils.env_manager's values (importing it would import MLflow).
ENV_MANAGERS = ("local", "virtualenv", "uv", "conda")


# ------------------------------------------------------------------------------------ a rule
class Section(BaseModel):
    """A section of the configuration (:class:`Config`): its keys and their rules; exact types
    (strict), no other key."""

    model_config = ConfigDict(strict=True, extra="forbid")


def allowed_error(allowed: str) -> PydanticCustomError:
    """The error of a value that breaks its rule, ``allowed`` saying what the rule allows."""
    return PydanticCustomError("allowed", "{allowed}", {"allowed": allowed})


@dataclass(frozen=True)
class Rule:
    """A key's rule, as ``Annotated[type, Rule(allowed, test)]``: a value of that type that
    passes ``test`` (when given; null, where the type allows it, needs not); any other value
    is named ``key=value: allowed``. ``allowed`` may instead be a function that says what is
    wrong with a value (None when nothing)."""

    allowed: str | Callable[[Any], str | None]
    test: Callable[[Any], Any] | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_wrap_validator_function(self._validate, handler(source))

    def _validate(self, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if callable(self.allowed):  # (of a value of any type)
            found = self.allowed(handler(value))
        else:
            try:
                value = handler(value)
                passes = value is None or self.test is None or self.test(value)
                found = None if passes else self.allowed
            except ValidationError:
                found = self.allowed
        if found:
            raise allowed_error(found)
        return value


# ------------------------------------------------------------------------------------ rules
# Each key of config.yaml's sections: its type (exact: no number for a string, no 1 for true),
# what else its values must be, and the text that says what is allowed (Rule). config.yaml
# holds the values.


def _text_problem(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Hydra reads main.experiment_name=2024 as a number, and no number is taken for text.
        return f"must be a non-empty string (Hydra reads {value} as a number: quote it, '{value}')"
    return "must be a non-empty string"


Text = Annotated[Any, Rule(_text_problem)]
Flag = Annotated[bool, Rule("must be true or false")]
Fraction = Annotated[
    float, Rule("must be a number in (0, 1)", lambda v: math.isfinite(v) and 0 < v < 1)
]


def _positive(value: int) -> bool:
    return value >= 1


def _sha(value: str) -> bool:
    return optional(value) is None or bool(re.fullmatch(r"[0-9a-fA-F]{64}", value.strip()))


def _name(what: str, nullable: bool = False) -> Rule:
    """A project, artifact or registered model name: MLflow's and W&B's rule."""
    allowed = f"must be {'null or ' if nullable else ''}{what} that MLflow and W&B accept"

    def problem(value: Any) -> str | None:
        found = None if nullable and value is None else name_problem(value)
        return found and f"{allowed} ({NAME_RULE}): it {found}"

    return Rule(problem)


def _steps_problem(value: Any) -> str | None:
    names, known = parse_steps(value), ", ".join(STEPS)
    if names is None:
        return f"must be all, a list or a comma string of: {known}"
    if not names:
        return f"must name at least one step of: {known}"
    if unknown := [s for s in names if s not in STEPS]:
        return f"unknown step(s) {unknown}; steps: {known}"
    return None


class Main(Section):
    project_name: Annotated[Any, _name("a project name")]  # also the MLflow experiment's
    experiment_name: Text
    execute_steps: Annotated[Any, Rule(_steps_problem)]
    cache: Flag
    random_seed: Annotated[int, Rule("must be an int in [0, 2**32 - 1]", lambda v: 0 <= v < 2**32)]
    env_manager: Annotated[
        Literal[ENV_MANAGERS] | None, Rule(f"must be null or one of {', '.join(ENV_MANAGERS)}")
    ]
    components_repository: Annotated[str | None, Rule("must be null or a git URL")]
    # Hydra reads 1.10 as a number: quoted, it stays the tag it is.
    components_version: Annotated[
        str | None, Rule("must be null or a git tag, branch or commit (quote one like '1.10')")
    ]
    artifact_store: Annotated[
        Literal[STORE_CHOICES], Rule(f"must be one of {', '.join(STORE_CHOICES)}")
    ]
    log_file: Text
    verbose: Flag
    registered_model_name: Annotated[Any, _name("a registered model name", nullable=True)]


class Data(Section):
    file_url: Annotated[Any, Rule(file_url_problem)]
    sha256: Annotated[str | None, Rule("must be null or 64 hex digits (the file's sha256)", _sha)]
    reference_dataset: Annotated[
        str, Rule("must be an artifact, name:version or name:alias", str.strip)
    ]
    ks_alpha: Fraction
    allow_unchecked: Flag
    test_size: Fraction
    val_size: Fraction
    stratify: Annotated[str | None, Rule("must be null or a column name", str.strip)]


class Tfidf(Section):
    max_features: Annotated[int | None, Rule("must be null (every term) or an int >= 1", _positive)]


class GridSearch(Section):
    """Exactly these keys (GRID_SEARCH_KEYS); config_model checks the entries of param_grid
    against the model."""

    param_grid: Annotated[dict, Rule("must map pipeline parameters to lists", bool)]
    cv: Annotated[int, Rule("must be an int >= 2 (the number of folds)", lambda v: v > 1)]
    scoring: Annotated[str, Rule("must be a scikit-learn scorer name, e.g. roc_auc_ovo", is_scorer)]

    @model_validator(mode="before")
    @classmethod
    def _exact_keys(cls, value: Any) -> Any:
        if not isinstance(value, dict) or set(value) != set(GRID_SEARCH_KEYS):
            keys = ", ".join(GRID_SEARCH_KEYS)
            raise allowed_error(f"must be null or a mapping of exactly {keys}")
        return value


class RandomForestPipeline(Section):
    # Moved (config_model.MOVED_KEYS): one that a config file still holds, or that
    # `+random_forest_pipeline.random_forest.max_depth=20` adds, is named with its new key.
    # (Hydra refuses the plain override first: main.py names the new key for it.)
    random_forest: Annotated[Any, Rule(moved_problem("random_forest"))] = None
    tfidf: Tfidf
    grid_search: GridSearch | None
    features: Annotated[Any, Rule(moved_problem("features"))] = None
    export_artifact: Annotated[Any, _name("an artifact name", nullable=True)]
    predict_n_jobs: Annotated[
        int | None, Rule("must be null (as trained) or a non-zero int (-1: every core)", bool)
    ]


class Config(Section):
    """The rules of config.yaml's values (its ``hydra`` section is Hydra's own)."""

    main: Main
    data: Data
    # The config group `dataset` (conf/dataset/NAME.yaml): the data contract, checked by
    # config_data.check_dataset (the same reading as the steps', util_lib.step.contract).
    dataset: Any
    # The config group `model` (conf/model/NAME.yaml): `_target_`, a scikit-learn classifier
    # class, and its keyword arguments, checked by scikit-learn's rules (config_model.py).
    model: Any
    random_forest_pipeline: RandomForestPipeline


# ------------------------------------------------------------------------------------ the check
def _inputs(
    check: Checker, model: type[BaseModel], node: DictConfig, prefix: str = "", ignore: Any = ()
) -> dict:
    """The values of the section ``node`` (``model``'s), each read by ``check``: a missing or
    unresolvable one is recorded there and left out. Keys the model lacks are read too."""
    fields, present = model.model_fields, list(node.keys())
    values = {}
    for name in [*fields, *(k for k in present if k not in fields and k not in ignore)]:
        field, key, child = fields.get(name), f"{prefix}{name}", None
        if name not in present and not fields[name].is_required():
            continue  # (a moved key, rightly absent)
        section = field.annotation if field is not None else None
        if isinstance(section, type) and issubclass(section, Section) and name in present:
            with suppress(OmegaConfBaseException):  # recorded as the key is read below
                child = OmegaConf.select(node, str(name))
        if isinstance(child, DictConfig):
            values[name] = _inputs(check, section, child, f"{key}.")
        elif (value := check.get(key)) is not ABSENT:
            values[name] = value
    return values


def _keys_at(loc: Sequence[Any]) -> str:
    """The keys of the section at ``loc``."""
    model: type[BaseModel] = Config
    for name in loc:
        model = model.model_fields[name].annotation
    return ", ".join(model.model_fields)


def check_values(check: Checker) -> None:
    """Record every value of ``check``'s configuration that breaks its rule (:class:`Config`;
    pydantic names every one) as ``key=value: what is allowed``, except those of keys already
    recorded (missing, unresolvable), and every key that no rule knows."""
    try:
        Config.model_validate(_inputs(check, Config, check.config, ignore=("hydra",)))
    except ValidationError as error:
        for found in error.errors():
            loc, value = found["loc"], found["input"]
            key = ".".join(map(str, loc))
            if any(p.key == key for p in check.problems):
                continue
            if found["type"] == "allowed":
                check.add(key, value, found["msg"])
            elif found["type"] == "extra_forbidden":
                where = ".".join(map(str, loc[:-1])) or "the configuration"
                check.add(key, value, f"no such key in {where}; its keys: {_keys_at(loc[:-1])}")
            else:  # a section that is not a mapping
                check.add(key, value, f"must be a mapping of {_keys_at(loc)}")
