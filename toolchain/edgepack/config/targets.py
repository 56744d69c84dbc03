"""What a device is: the schema of ``targets/*.yaml``.

A target is data, not code: adding a board means dropping a YAML file in a folder. The schema is
strict (unknown keys are errors) so a typo in a user's file is reported instead of ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FormatName = Literal["tflite", "onnx", "openvino"]
RuntimeName = Literal["litert", "onnxruntime", "openvino", "tensorrt"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceInfo(Strict):
    vendor: str
    soc: str = ""
    cpu: str
    cores: int = Field(ge=1)
    accelerator: str = "none"


class RuntimeInfo(Strict):
    """A runtime the device runs models with, and the version found on typical images of it.

    The version matters: op versions a newer converter writes can be unknown to an older
    on-device runtime (e.g. tflite-runtime 2.14 vs TF 2.21's FULLY_CONNECTED v12).
    """

    name: RuntimeName
    version: str = Field(pattern=r"^\d+(\.\d+){0,2}$")
    packages: list[str] = Field(default_factory=list)
    delegates: list[str] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)  # OpenVINO devices: CPU, GPU, NPU
    #: the runtime runs ops with 16-bit activations and int8 weights (16x8) about as fast as
    #: int8: only then may the accuracy fallback give sensitive layers 16-bit activations
    #: (where 16x8 ops fall to slow reference kernels, a float layer is faster). LiteRT only
    kernels_int16x8: bool = False

    @model_validator(mode="after")
    def _int16x8_is_litert(self) -> RuntimeInfo:
        if self.kernels_int16x8 and self.name != "litert":
            raise ValueError("kernels_int16x8 is a LiteRT capability (edgepack makes 16x8 "
                             f"layers in TFLite only), not {self.name}'s")
        return self


class Limits(Strict):
    memory_mb: int = Field(ge=1)
    storage_mb: int = Field(ge=1)
    max_model_mb: float = Field(gt=0)


class Constraints(Strict):
    static_shapes: bool = False  # the runtime/delegate needs every dimension fixed
    int8_io: bool = False  # the accelerator wants int8/uint8 model I/O


class Target(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    aliases: list[str] = Field(default_factory=list)
    title: str
    device: DeviceInfo
    arch: Literal["aarch64", "armv7l", "x86_64"]
    isa: list[str] = Field(default_factory=list)
    os: str = ""
    runtimes: list[RuntimeInfo] = Field(min_length=1)
    formats: list[FormatName] = Field(min_length=1, description="accepted, in order of preference")
    default_profile: str
    limits: Limits
    constraints: Constraints = Constraints()

    def runtime(self, name: str) -> RuntimeInfo | None:
        return next((r for r in self.runtimes if r.name == name), None)
