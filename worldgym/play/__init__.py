"""Driving envs end to end: the keyboard player, rollouts beside the real twin, and recording datasets.

Layer 5: the player window (`player`, `keymap`, `recorder`, `cli` = ``worldgym play``),
``worldgym rollout`` (`rollout`) and ``worldgym record`` (`record`).
"""
