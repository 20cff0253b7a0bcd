"""File formats: .mtp models, .cfg data sets, structures through ASE."""
