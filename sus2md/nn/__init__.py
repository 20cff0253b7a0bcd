"""Pure-torch, TorchScript-clean model code: neighbor list, radial basis, moments, potential."""
