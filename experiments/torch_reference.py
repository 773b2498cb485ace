"""A PyTorch twin of the CIFAR nets and their SGD step, to time against
(`benchmark --compare=torch`).

Same architecture as cnn_jax.models.cifar_resnet (BN after every conv, option-A shortcuts,
He-normal init) and the same update (momentum 0.9, weight decay 1e-4, lr 0.1), in the usual
eager PyTorch style. Needs the `torch` extra. `step_timer_in_subprocess` runs it in a process
of its own: PyTorch's OpenMP threads and those of the oneDNN library our CPU convolutions call
(`cnn_jax.native.onednn`) would otherwise compete for the cores whenever either side runs.
"""

import multiprocessing
import time
from typing import Any, Callable

from cnn_jax.models import cifar_resnet


def _modules():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, residual: bool):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.residual, self.stride, self.extra = residual, stride, cout - cin

        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            if self.residual:
                shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
                y = y + F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))  # option A
            return F.relu(y)

    class CifarResNet(nn.Module):
        def __init__(self, depth: int, residual: bool, width: int, num_classes: int, channels: int):
            super().__init__()
            n = cifar_resnet.blocks_per_stage(depth)
            self.stem = nn.Sequential(
                nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
            )
            blocks, cin = [], width
            for filters, stride in zip(cifar_resnet.STAGE_FILTERS, cifar_resnet.STAGE_STRIDES):
                cout = filters * width // 16
                for i in range(n):
                    blocks.append(Block(cin, cout, stride if i == 0 else 1, residual))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.head = nn.Linear(cin, num_classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

        def forward(self, x):
            x = self.blocks(self.stem(x))
            return self.head(x.mean(dim=(2, 3)))

    return torch, CifarResNet


def step_timer(
    model_name: str, batch_size: int, warmup: int = 2, width: int = 16, channels_last: bool = False
) -> tuple[Callable[[int], float], dict[str, Any]]:
    """PyTorch's train step for a cifar_resnet*/cifar_plain* net on random data, warmed up.

    `channels_last` keeps images and kernels NHWC (`torch.channels_last`), PyTorch's faster
    layout for CPU convolutions; the default is PyTorch's default, NCHW. Returns
    `run(steps) -> seconds`, which times that many steps, and a description of the run
    (device, torch version, threads, memory format).
    """
    torch, CifarResNet = _modules()
    match = cifar_resnet.NAME_PATTERN.fullmatch(model_name)
    if match is None:
        raise ValueError(f"No PyTorch twin for {model_name!r}; the CIFAR nets have one.")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = CifarResNet(int(match.group(2)), match.group(1) == "resnet", width, 10, 3).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(batch_size, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (batch_size,), device=device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model, images = model.to(memory_format=memory_format), images.to(memory_format=memory_format)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            loss = step()
        loss.item()  # waits for the device
        return time.perf_counter() - start

    run(warmup)
    return run, {
        "device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "memory_format": "channels_last" if channels_last else "contiguous",
    }


def step_timer_in_subprocess(
    model_name: str, batch_size: int, timer: Callable = step_timer, **options: Any
) -> tuple[Callable[[int], float], dict[str, Any]]:
    """`timer(model_name, batch_size, **options)` built and run in a child process, the same
    interface.

    The child waits, idle, while the caller runs; `run(steps)` hands it the steps and waits
    for its seconds. An error in the child, or its end, is raised here. The child ends with
    the caller.
    """
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    arguments = (theirs, timer, model_name, batch_size, options)
    context.Process(target=_serve, args=arguments, daemon=True).start()
    theirs.close()  # the child holds the only other end: if it dies, recv() ends with EOFError

    def receive():
        try:
            kind, value = ours.recv()
        except EOFError:
            raise RuntimeError("The PyTorch twin's process ended without an answer.") from None
        if kind == "error":
            raise RuntimeError(f"The PyTorch twin failed: {value}")
        return value

    info = receive()

    def run(steps: int) -> float:
        ours.send(steps)
        return receive()

    return run, info


def _serve(connection, timer: Callable, model_name: str, batch_size: int, options: dict) -> None:
    try:
        run, info = timer(model_name, batch_size, **options)
        connection.send(("ok", info))
        while True:
            connection.send(("ok", run(connection.recv())))
    except EOFError:  # the caller has finished
        return
    except Exception as e:  # reported to the caller, which raises it
        connection.send(("error", f"{type(e).__name__}: {e}"))
