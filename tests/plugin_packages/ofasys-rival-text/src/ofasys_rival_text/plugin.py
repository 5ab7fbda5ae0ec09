from ofasys.hookspecs import hookimpl
from ofasys.spec import SlotType


@hookimpl
def ofasys_register_slot_types(register):
    register(SlotType(name="TEXT", kind="tokens", components={"preprocess": ("rival",)}))
