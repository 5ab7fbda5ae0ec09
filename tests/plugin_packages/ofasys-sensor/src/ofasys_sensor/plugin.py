"""A third-party slot type: a fixed-length vector of sensor readings."""

from ofasys.hookspecs import hookimpl
from ofasys.spec import Attribute, SlotType


@hookimpl
def ofasys_register_slot_types(register):
    register(SlotType(name="SENSOR", kind="features", sides=("encoder",),
                      components={"preprocess": ("sensor",), "adaptor": ("sensor_mlp",)},
                      attributes=(Attribute("channels", "int", 3, "readings per step"),)))
