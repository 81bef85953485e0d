"""Clara Deploy pipeline definitions (YAML, api-version 0.3.0 to 0.5.0).

:func:`parse_definition` reads and checks a definition file into a frozen
:class:`PipelineDefinition`; every error carries ``path:line:column``::

    from clara_rt.definition import parse_definition

    definition = parse_definition("pipeline.yaml", variables={"MODEL": "spleen"})
    print(definition.edges())
"""

from __future__ import annotations

from clara_rt.definition.schema import SUPPORTED_API_VERSIONS as SUPPORTED_API_VERSIONS
from clara_rt.definition.schema import ClaraRTKey as ClaraRTKey
from clara_rt.definition.schema import ContainerDef as ContainerDef
from clara_rt.definition.schema import Location as Location
from clara_rt.definition.schema import OperatorDef as OperatorDef
from clara_rt.definition.schema import PipelineDefinition as PipelineDefinition
from clara_rt.definition.schema import PortDef as PortDef
from clara_rt.definition.schema import ServiceDef as ServiceDef
from clara_rt.definition.schema import parse_definition as parse_definition
from clara_rt.definition.variables import JOB_ID_TOKEN as JOB_ID_TOKEN
from clara_rt.definition.variables import fill_job_id as fill_job_id
from clara_rt.definition.variables import substitute as substitute

__all__ = [
    "JOB_ID_TOKEN",
    "SUPPORTED_API_VERSIONS",
    "ClaraRTKey",
    "ContainerDef",
    "Location",
    "OperatorDef",
    "PipelineDefinition",
    "PortDef",
    "ServiceDef",
    "fill_job_id",
    "parse_definition",
    "substitute",
]
