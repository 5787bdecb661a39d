"""PyTorch's side of `mixed_precision.rs`: ten AdamW steps (lr 1e-5, weight decay 0.01, clip 1.0)
of SFT on the tiny fixture, in f32, in bf16 with f32 master weights (apex O2 / FSDP), and with
`torch.autocast(bfloat16)` over f32 weights; prints each update's cosine and norm ratio against
the f32 update. Run from the repository root:

    OMP_WAIT_POLICY=PASSIVE python3 learners/tests/mixed_precision_torch.py
"""
import torch
from transformers import AutoModelForCausalLM
torch.manual_seed(0)
D = "tests/fixtures/tiny-qwen2"
def examples():
    out=[]
    for e in range(4):
        n=20+3*e
        ids=[(e*131+i*37+i*i*7)%1000+1 for i in range(n)]
        mask=[i>=n//2 for i in range(n)]
        out.append((ids,mask))
    return out
def loss_fn(model, dtype_ctx=None):
    tot=0; cnt=0
    for ids,mask in examples():
        x=torch.tensor([ids]); 
        if dtype_ctx:
            with torch.autocast("cpu",dtype=torch.bfloat16):
                logits=model(x).logits.float()
        else:
            logits=model(x).logits.float()
        lp=torch.log_softmax(logits[0,:-1],-1).gather(-1,x[0,1:,None])[:,0]
        m=torch.tensor(mask[1:],dtype=torch.float32)
        tot=tot-(lp*m).sum(); cnt+=m.sum()
    return tot/cnt
def run(mode):
    model=AutoModelForCausalLM.from_pretrained(D,torch_dtype=torch.float32)
    before={n:p.detach().clone() for n,p in model.named_parameters()}
    if mode=="bf16master":
        master=[p.detach().clone().float().requires_grad_(True) for p in model.parameters()]
        model=model.to(torch.bfloat16)
        opt=torch.optim.AdamW(master,lr=1e-5,weight_decay=0.01)
    else:
        opt=torch.optim.AdamW(model.parameters(),lr=1e-5,weight_decay=0.01)
    for _ in range(10):
        opt.zero_grad()
        l=loss_fn(model, mode=="autocast")
        l.backward()
        if mode=="bf16master":
            for m,p in zip(master,model.parameters()): m.grad=p.grad.float()
            torch.nn.utils.clip_grad_norm_(master,1.0)
            opt.step()
            with torch.no_grad():
                for m,p in zip(master,model.parameters()): p.copy_(m.to(torch.bfloat16))
            after={n:m.detach() for (n,_),m in zip(model.named_parameters(),master)}
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(),1.0)
            opt.step()
            after={n:p.detach() for n,p in model.named_parameters()}
    return torch.cat([(after[n].float()-before[n]).flatten() for n in before])
f=run("f32")
for mode in ["bf16master","autocast"]:
    u=run(mode)
    print(mode,"cos",float(torch.nn.functional.cosine_similarity(u,f,dim=0)),"ratio",float(u.norm()/f.norm()))
