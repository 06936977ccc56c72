"""Joey's edge inference engine: fetches a published pipeline, serves /infer, keeps inference logs."""
