# ruff: noqa: F821 - the names come from the template file these functions are put into
"""Question 1.2 (a) as a student's part1/main_cnn.py: our training and testing logic (part1.train), template-shaped.

The test builder replaces the template's functions of the same names with these
(read as text; the names they use come from the template's main_cnn.py).
"""


def train_model(model, lr, batch_size, epochs, data_dir, checkpoint_name, device):
    train_dataset, val_dataset = get_train_validation_set(data_dir)
    train_loader = data.DataLoader(train_dataset, batch_size=batch_size, shuffle=True)
    val_loader = data.DataLoader(val_dataset, batch_size=batch_size, shuffle=False)

    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    milestones = [int(0.6 * epochs), int(0.9 * epochs)]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    loss_module = nn.CrossEntropyLoss()

    best_accuracy = -1.0
    for _epoch in range(epochs):
        model.train()
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            loss = loss_module(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        accuracy = evaluate_model(model, val_loader, device)
        if accuracy > best_accuracy:
            best_accuracy = accuracy
            torch.save(model.state_dict(), checkpoint_name)

    model.load_state_dict(torch.load(checkpoint_name))
    return model


def evaluate_model(model, data_loader, device):
    model.eval()
    correct, count = 0, 0
    with torch.no_grad():
        for images, labels in data_loader:
            predictions = model(images.to(device)).argmax(dim=1).cpu()
            correct += (predictions == labels).sum().item()
            count += len(labels)
    accuracy = correct / count
    return accuracy


def test_model(model, batch_size, data_dir, device, seed):
    set_seed(seed)
    test_results = {}

    def accuracy_on(augmentation):
        test_set = get_test_set(data_dir, augmentation)
        loader = data.DataLoader(test_set, batch_size=batch_size, shuffle=False)
        return evaluate_model(model, loader, device)

    test_results["clean"] = accuracy_on(None)
    corruptions = {
        "gaussian_noise": gaussian_noise_transform,
        "gaussian_blur": gaussian_blur_transform,
        "contrast": contrast_transform,
        "jpeg": jpeg_transform,
    }
    for name, make_corruption in corruptions.items():
        test_results[name] = [accuracy_on(make_corruption(severity)) for severity in range(1, 6)]
    return test_results
