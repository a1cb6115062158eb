#include "tessera/diagnostics/profiler.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>

#include "tessera/core/error.hpp"

namespace tessera {

namespace {

thread_local int64_t tl_task_start = 0;

int64_t since(std::chrono::steady_clock::time_point origin) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                              origin)
      .count();
}

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '<':
        out += "\\u003c";
        break;  // safe inside an HTML <script>
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += fmt::format("\\u{:04x}", c);
        else
          out += c;
    }
  }
  return out;
}

std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::ofstream open_for_writing(const std::string& path) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("cannot open '{}' for writing", path));
  return f;
}

}  // namespace

Profiler::Profiler() : origin_(std::chrono::steady_clock::now()) {
  activate();
}

Profiler::~Profiler() {
  deactivate();
}

void Profiler::on_pretask(const TaskEvent&) {
  tl_task_start = since(origin_);
}

void Profiler::on_posttask(const TaskEvent& t, const Value&) {
  const int64_t end = since(origin_);
  Slot& slot = slots_[static_cast<size_t>(t.worker) % kSlots];
  std::lock_guard lock(slot.mutex);
  slot.records.push_back(Raw{t.key, std::string(t.task.label()), tl_task_start, end, t.worker});
}

std::vector<TaskRecord> Profiler::results() const {
  std::vector<TaskRecord> out;
  for (const Slot& slot : slots_) {
    std::lock_guard lock(const_cast<std::mutex&>(slot.mutex));
    for (const Raw& r : slot.records) {
      out.push_back(TaskRecord{r.key.str(), r.op, r.start_ns * 1e-9, r.end_ns * 1e-9, r.worker});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const TaskRecord& a, const TaskRecord& b) { return a.start < b.start; });
  return out;
}

void Profiler::clear() {
  for (Slot& slot : slots_) {
    std::lock_guard lock(slot.mutex);
    slot.records.clear();
  }
}

void Profiler::write_chrome_trace(const std::string& path) const {
  std::ofstream f = open_for_writing(path);
  f << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  bool first = true;
  std::map<int, bool> workers;
  for (const TaskRecord& r : results()) {
    workers[r.worker] = true;
    f << (first ? "" : ",\n")
      << fmt::format(
             R"({{"name":"{}","cat":"task","ph":"X","ts":{:.3f},"dur":{:.3f},"pid":1,"tid":{},"args":{{"key":"{}"}}}})",
             json_escape(r.op), r.start * 1e6, (r.end - r.start) * 1e6, r.worker,
             json_escape(r.key));
    first = false;
  }
  for (const auto& [w, _] : workers) {
    f << (first ? "" : ",\n")
      << fmt::format(
             R"({{"name":"thread_name","ph":"M","pid":1,"tid":{},"args":{{"name":"worker {}"}}}})",
             w, w);
    first = false;
  }
  f << "\n]}\n";
}

void Profiler::write_html(const std::string& path, const std::string& title) const {
  constexpr size_t kMaxRecords = 200000;
  const std::vector<TaskRecord> records = results();
  std::map<std::string, size_t> op_ids;
  std::string ops = "[", data = "[";
  size_t shown = 0;
  for (const TaskRecord& r : records) {
    if (shown == kMaxRecords) break;
    auto [it, added] = op_ids.emplace(r.op, op_ids.size());
    if (added) ops += fmt::format("{}\"{}\"", it->second ? "," : "", json_escape(r.op));
    data += fmt::format("{}[{},{},{},{},\"{}\"]", shown ? "," : "", r.worker, it->second, r.start,
                        r.end - r.start, json_escape(r.key));
    ++shown;
  }
  ops += "]";
  data += "]";
  const std::string note = records.size() > shown
                               ? fmt::format(" (first {} of {} tasks shown)", shown, records.size())
                               : "";

  std::ofstream f = open_for_writing(path);
  f << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" << html_escape(title)
    << "</title>\n"
    << R"(<style>
body{font:13px system-ui,sans-serif;margin:16px;color:#222}
#wrap{position:relative}canvas{border:1px solid #ccc;width:100%}
#tip{position:absolute;pointer-events:none;background:#fff;border:1px solid #999;padding:4px 6px;display:none;white-space:nowrap}
#legend span{display:inline-block;margin:2px 10px 2px 0}#legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px}
</style></head><body>
)"
    << "<h2>" << html_escape(title) << "</h2>\n<p id=\"summary\"></p><div id=\"legend\"></div>\n"
    << "<div id=\"wrap\"><canvas id=\"c\" height=\"300\"></canvas><div id=\"tip\"></div></div>\n"
    << "<p>Drag to pan, wheel to zoom, hover for a task." << html_escape(note) << "</p>\n<script>\n"
    << "const OPS=" << ops << ";\nconst T=" << data << ";\n"
    << R"(const c=document.getElementById('c'),g=c.getContext('2d'),tip=document.getElementById('tip');
const color=i=>`hsl(${(i*137.508)%360},60%,55%)`;
const rows=T.reduce((m,t)=>Math.max(m,t[0]),0)+1,rowH=Math.max(14,Math.min(40,260/rows));
let t0=Infinity,t1=0;for(const t of T){t0=Math.min(t0,t[2]);t1=Math.max(t1,t[2]+t[3]);}if(!T.length){t0=0;t1=1;}
let lo=t0,hi=t1+(t1-t0)*0.01+1e-9;
const busy=new Array(OPS.length).fill(0),count=new Array(OPS.length).fill(0);for(const t of T){busy[t[1]]+=t[3];count[t[1]]++;}
document.getElementById('summary').textContent=`${T.length} tasks on ${rows} worker${rows>1?'s':''}, ${(t1-t0).toFixed(4)} s`;
document.getElementById('legend').innerHTML=OPS.map((o,i)=>`<span><i style="background:${color(i)}"></i>${o.replace(/[&<>]/g,'')}: ${count[i]} tasks, ${busy[i].toFixed(4)} s</span>`).join('');
function draw(){const W=c.clientWidth;c.width=W*devicePixelRatio;c.height=(rows*rowH+24)*devicePixelRatio;c.style.height=(rows*rowH+24)+'px';
g.setTransform(devicePixelRatio,0,0,devicePixelRatio,0,0);g.clearRect(0,0,W,rows*rowH+24);const sx=W/(hi-lo);
for(const t of T){const x=(t[2]-lo)*sx,w=Math.max(t[3]*sx,0.5);if(x>W||x+w<0)continue;g.fillStyle=color(t[1]);g.fillRect(x,t[0]*rowH+1,w,rowH-2);}
g.fillStyle='#444';for(let i=0;i<=5;i++){const tt=lo+(hi-lo)*i/5;g.fillText((tt-t0).toFixed(4)+' s',Math.min(W-60,i*W/5+2),rows*rowH+16);}}
let drag=null;c.onmousedown=e=>drag={x:e.clientX,lo,hi};window.onmouseup=()=>drag=null;
c.onmousemove=e=>{const r=c.getBoundingClientRect(),W=c.clientWidth;if(drag){const d=(e.clientX-drag.x)/W*(drag.hi-drag.lo);lo=drag.lo-d;hi=drag.hi-d;draw();return;}
const tm=lo+(e.clientX-r.left)/W*(hi-lo),row=Math.floor((e.clientY-r.top)/rowH);let hit=null;
for(const t of T){if(t[0]===row&&t[2]<=tm&&tm<=t[2]+Math.max(t[3],(hi-lo)/W)){hit=t;break;}}
if(hit){tip.style.display='block';tip.style.left=(e.clientX-r.left+12)+'px';tip.style.top=(e.clientY-r.top+12)+'px';tip.textContent=`${OPS[hit[1]]}  ${hit[4]}  ${(hit[3]*1e3).toFixed(3)} ms  worker ${hit[0]}`;}else tip.style.display='none';};
c.onwheel=e=>{e.preventDefault();const r=c.getBoundingClientRect(),f=e.deltaY>0?1.25:0.8,m=lo+(e.clientX-r.left)/c.clientWidth*(hi-lo);lo=m-(m-lo)*f;hi=m+(hi-m)*f;draw();};
window.onresize=draw;draw();
</script></body></html>
)";
}

}  // namespace tessera
