"""The pipeline's logic, stage by stage: data, cleaning and the split, features, the model
families and their searches, the ensemble, selection and evaluation (the DVC stages in
``stages/`` are thin entry points over these modules)."""
