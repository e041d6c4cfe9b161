"""Both stacks of one model side by side as an A/B deployment: `drum-compat ab` (the arms behind an nginx front
that splits or mirrors traffic) and `drum-compat ab-status` (the two arms' figures side by side)."""
