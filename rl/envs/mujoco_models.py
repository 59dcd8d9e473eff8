"""MuJoCo models of the locomotion tasks: gymnasium's packaged XML, edited to rllab's physics.

The original ran rllab's vendor/mujoco_models. gymnasium ships the same robots;
the half-cheetah is physically identical, the ant differs in three places, which
are patched here (see ../shared/data/rllab_models/SOURCE.md):
  - option timestep 0.02 (gymnasium: 0.01);
  - geom default solref ".02 1", solimp ".8 .8 .01" (gymnasium: MuJoCo defaults);
  - motors ctrlrange -150..150 with gear 1 (gymnasium: -1..1, gear 150). The
    torque range is the same, but rllab's action normalisation and the ctrl cost
    (a / half the ctrl range) are defined on the ctrl range, so we keep rllab's.
"""
import functools
import os
import xml.etree.ElementTree as ET

import gymnasium
import mujoco

ASSETS = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets")
MODELS = ("half_cheetah", "ant")


def _patch_ant(root):
    root.find("option").set("timestep", "0.02")
    geom_default = root.find("default").find("geom")
    geom_default.set("solref", ".02 1")
    geom_default.set("solimp", ".8 .8 .01")
    for motor in root.find("actuator").iter("motor"):
        motor.set("ctrlrange", "-150.0 150.0")
        motor.set("gear", "1")


_PATCHES = {"half_cheetah": lambda root: None, "ant": _patch_ant}


@functools.lru_cache(maxsize=None)
def model_xml(name):
    """XML text of the rllab-equivalent model `name` ('half_cheetah' or 'ant')."""
    if name not in _PATCHES:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    root = ET.parse(os.path.join(ASSETS, f"{name}.xml")).getroot()
    _PATCHES[name](root)
    return ET.tostring(root, encoding="unicode")


def load_model(name, sensors=()):
    """A fresh compiled `mujoco.MjModel` of `name`.

    The compiler's settotalmass (half-cheetah: 14) is deprecated in MuJoCo 4 and
    warns on every load; it is applied after compiling instead, as MuJoCo
    advises (the tests check the masses against rllab's model).
    `sensors`: (tag, attributes) of sensors to add, e.g. ("subtreelinvel",
    {"body": "torso"}). Sensors only read the simulation; a sensor also makes
    mj_forward compute the quantities it needs (subtree_linvel, cfrc_ext, ...).
    """
    root = ET.fromstring(model_xml(name))
    if sensors:
        section = root.find("sensor")
        section = ET.SubElement(root, "sensor") if section is None else section
        for tag, attributes in sensors:
            ET.SubElement(section, tag, attributes)
    compiler = root.find("compiler")
    total = compiler.attrib.pop("settotalmass", None) if compiler is not None else None
    model = mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))
    if total is not None:
        mujoco.mj_setTotalmass(model, float(total))
        mujoco.mj_setConst(model, mujoco.MjData(model))
    return model


def init_qpos(model):
    """rllab's start pose: the model's `init_qpos` numeric if present, else qpos0."""
    numeric = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_NUMERIC, "init_qpos")
    if numeric < 0:
        return model.qpos0.copy()
    adr, size = model.numeric_adr[numeric], model.numeric_size[numeric]
    return model.numeric_data[adr:adr + size].copy()
