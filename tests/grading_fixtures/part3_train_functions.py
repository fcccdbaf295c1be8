# ruff: noqa: F821 - the names come from the template file these functions are put into
"""Question 3.6 as a student's part3/train.py: our compute_loss and evaluate_model (part3.train), template-shaped.

Read as text by the test builder, which replaces the template's functions of the
same names (the names they use come from the template's train.py).
"""


def compute_loss(model, molecules, criterion):
    if isinstance(model, MLP):
        prediction = model(get_mlp_features(molecules))
    elif isinstance(model, GNN):
        prediction = model(get_node_features(molecules), molecules.edge_index, molecules.edge_attr, molecules.batch)
    else:
        raise TypeError(f"expected an MLP or a GNN, got {type(model).__name__}")
    loss = criterion(prediction.squeeze(-1), get_labels(molecules))
    return loss


@torch.no_grad()
def evaluate_model(model, data_loader, criterion, permute):
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for molecules in data_loader:
        if permute:
            molecules = permute_indices(molecules)
        total += compute_loss(model, molecules, criterion).item() * molecules.num_graphs
        count += molecules.num_graphs
    model.train(was_training)
    avg_loss = total / count
    return avg_loss
