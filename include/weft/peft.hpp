// weft/peft.hpp - parameter-efficient fine-tuning adapters: LoRA, rsLoRA, LoRA+, PiSSA, OLoRA
// (the LoRA family) and Bone in both of its meanings, BoneShared (PEFT Bone / MiSS) and
// BoneAffine (Bat, the paper's block-affine Bone), plus MissMini. See docs/peft.md.
#pragma once

#include "weft/peft/adapter.hpp"
#include "weft/peft/bone.hpp"
#include "weft/peft/budget.hpp"
#include "weft/peft/decompose.hpp"
#include "weft/peft/kernels.hpp"
#include "weft/peft/lora.hpp"
#include "weft/peft/merge.hpp"
#include "weft/peft/model.hpp"
#include "weft/peft/ops.hpp"
