"""The standard downstream tasks: what a trained model is for. One module per task (its spec in
`specs`, its entry in `plugin`), each with `run(task_spec, context) -> TaskResult`: metrics,
pictures and one headline figure with its baselines, all computed in the same run (see
`pipeline.evaluators.context`). A family's own tasks live in its folder and register the same way.

A task declares what it needs of the model (capabilities: an encoder, a classifier...); a spec
whose model does not provide it is rejected at validation.
"""
