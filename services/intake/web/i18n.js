/* Interface words in Chinese and Tibetan. Short, plain words: many users read little.
   The Tibetan wording is kept simple on purpose and should be reviewed by local staff. */
"use strict";
(function (global) {
  const WORDS = {
    zh: {
      app: "联户", report: "报告", send: "发送", my_reports: "我的报告", tasks: "任务",
      sign_in: "登录", sign_out: "退出", username: "账号", password: "密码",
      wrong_password: "账号或密码不对", locked: "错误太多，请稍后再试", no_network: "没有网络",
      hold_to_speak: "按住说话", release_to_stop: "松开结束", press_again: "再按一次结束",
      recording: "正在录音", recorded: "已录好", delete: "删掉", text_optional: "文字（可以不写）",
      household: "哪一户", no_household: "不指定", sending: "正在发送", saved_waiting: "已存在手机里，有网络时自动发送",
      waiting: "等待发送", sent: "已发出", send_failed: "发不出去", nothing_to_send: "请先录音或写字",
      online: "有网络", offline: "没有网络", language: "语言", other_language: "བོད་ཡིག",
      no_reports: "还没有报告", voice: "语音", answer: "回复", confirm: "问题已解决", reopen: "没有解决",
      rate: "评价", thanks: "谢谢", loading: "正在加载", back: "返回", no_tasks: "没有任务",
      your_answer: "你的回答", number: "数字", text: "文字", answered: "已回答", due: "截止",
      mic_denied: "不能使用麦克风", reload: "刷新", refresh: "刷新", updated: "已更新",
      mic_unsupported: "这个手机不能录音，请写字", attach_location: "附上我的位置", seconds: "秒", error: "出错了", install: "安装到手机",
      // states
      st_received: "已收到", st_routed: "已送达", st_acknowledged: "已受理", st_in_progress: "正在办理",
      st_resolved: "已解决", st_closed: "已办结", st_returned: "已退回", st_escalated: "已上报",
      st_reopened: "重新办理", st_merged: "已合并", st_pending: "等待发送", st_failed: "发送失败",
      st_open: "进行中", st_done: "已完成", st_overdue: "已超期", st_cancelled: "已取消",
      // console
      console: "综治中心工作台", cases: "事件", board: "展示台", archive: "档案库", analysis: "数据分析",
      accounts: "账号", filters: "筛选", unit: "单位", category: "类别", urgency: "紧急程度", state: "状态",
      overdue: "超期", only_overdue: "只看超期", search: "搜索", all: "全部", urgent: "紧急", general: "一般",
      submitted: "上报时间", deadline: "期限", handler: "承办", township: "乡镇", summary: "内容",
      detail: "详情", transcript: "转写", transcription: "转写状态", evidence: "分类依据", recipients: "接收单位",
      timeline: "办理过程", actions: "可做的操作", note: "说明", reason: "原因", audio: "录音",
      collected: "收集", resolved: "解决", on_time: "按时解决率", escalated: "上报", satisfaction: "满意度",
      by_unit: "按单位", by_category: "按类别", trend: "趋势（每周）", overdue_by_unit: "各单位超期",
      map: "事件地图", map_note: "无在线底图：只画出有位置的事件（县界为示意）",
      households: "户", people: "人", liaison_workers: "联户员", livestock: "牲畜", flags: "标记",
      members: "成员", head: "户主", book_no: "户口簿号", address: "地址", relation: "关系",
      new_task: "下发任务", title: "标题", body: "内容", kind: "类型", answer_type: "回答方式",
      targets: "下发给", due_at: "截止时间", create: "创建", sent_tasks: "我下发的", received_tasks: "我收到的",
      rollup: "完成情况", answered_count: "已回答", recipients_count: "应回答", sum: "合计", cancel: "取消任务",
      new_account: "新建账号", person_id: "人员编号", org_unit_id: "单位编号", disable: "停用", enable: "启用",
      reset_password: "重置密码", disabled: "已停用", role: "角色", name: "姓名", live: "自动刷新",
      total: "共", page: "页", prev: "上一页", next: "下一页", none: "无", not_available: "此功能的接口还没有上线",
      cases_fallback: "事件列表接口未上线，显示收件箱", done_ok: "已完成", my_area: "本辖区", from: "从", to: "到", copy: "抄送",
      a_acknowledge: "受理", a_start: "开始办理", a_comment: "留言", a_resolve: "办结", a_return: "退回",
      a_reassign: "改派", a_escalate: "上报", a_merge: "合并", a_confirm: "确认解决", a_reopen: "重新打开",
      a_rate: "评价",
      k_outreach: "政策宣传", k_survey: "灾情调查", k_headcount: "人数统计", k_other: "其他",
      r_not_ours: "不归我们管", r_cannot_solve: "我们解决不了",
      // categories, as named in the routing rules
      c_dispute: "矛盾纠纷", c_grassland_boundary: "草场边界", c_safety_hazard: "安全隐患", c_weather_disaster: "自然灾害", c_house_collapse: "房屋倒塌", c_illness: "伤病就医", c_livestock: "牲畜疫病与损失", c_population_movement: "返乡及流动人口", c_ecology: "生态保护", c_livelihood: "民生困难", c_infrastructure: "基础设施", c_policy: "政策咨询", c_suggestion: "意见建议", c_other: "其他",
    },
    bo: {
      app: "ཁྱིམ་འབྲེལ།", report: "སྙན་ཞུ།", send: "བཏང་།", my_reports: "ངའི་སྙན་ཞུ།", tasks: "ལས་འགན།",
      sign_in: "ནང་འཛུལ།", sign_out: "ཕྱིར་ཐོན།", username: "མིང་།", password: "གསང་ཨང་།",
      wrong_password: "མིང་ངམ་གསང་ཨང་ནོར་འདུག", locked: "ནོར་འཁྲུལ་མང་དྲགས། ཅུང་ཙམ་སྒུག་རོགས།",
      no_network: "དྲ་རྒྱ་མེད།",
      hold_to_speak: "མནན་ནས་སྐད་ཆ་ཤོད།", release_to_stop: "ལག་པ་ཕྱུང་ན་མཇུག་རྫོགས།",
      press_again: "ཡང་བསྐྱར་མནན་ན་མཇུག་རྫོགས།",
      recording: "སྒྲ་ལེན་བཞིན་པ།", recorded: "སྒྲ་ལེན་ཟིན།", delete: "བསུབ།",
      text_optional: "ཡི་གེ （མ་བྲིས་ཀྱང་ཆོག）", household: "ཁྱིམ་ཚང་།", no_household: "མེད།",
      sending: "གཏོང་བཞིན་པ།", saved_waiting: "ཁ་པར་ནང་ཉར་ཟིན། དྲ་རྒྱ་ཡོད་དུས་རང་བཞིན་གཏོང་།",
      waiting: "གཏོང་རྒྱུ་སྒུག་བཞིན་པ།", sent: "བཏང་ཟིན།", send_failed: "གཏོང་མ་ཐུབ།",
      nothing_to_send: "སྔོན་ལ་སྒྲ་ལེན་པའམ་ཡི་གེ་བྲིས།",
      online: "དྲ་རྒྱ་ཡོད།", offline: "དྲ་རྒྱ་མེད།", language: "སྐད་ཡིག", other_language: "中文",
      no_reports: "སྙན་ཞུ་མེད།", voice: "སྐད་ཆ།", answer: "ལན།", confirm: "དཀའ་ངལ་སེལ་ཟིན།",
      reopen: "སེལ་མེད།", rate: "དཔྱད་བརྗོད།", thanks: "ཐུགས་རྗེ་ཆེ།", loading: "སྒུག་རོགས།",
      back: "ཕྱིར་ལོག", no_tasks: "ལས་འགན་མེད།", your_answer: "ཁྱེད་ཀྱི་ལན།", number: "ཨང་གྲངས།",
      text: "ཡི་གེ", answered: "ལན་བཏབ་ཟིན།", due: "དུས་ཚོད་མཇུག", mic_denied: "སྒྲ་སྡུད་ཆས་བེད་སྤྱོད་བྱེད་མི་ཐུབ།",
      reload: "གསར་བསྒྱུར།", refresh: "གསར་བསྒྱུར།", updated: "གསར་བསྒྱུར་ཟིན།",
      mic_unsupported: "ཁ་པར་འདིས་སྒྲ་ལེན་མི་ཐུབ། ཡི་གེ་བྲིས་རོགས།", seconds: "སྐར་ཆ།", error: "ནོར་འཁྲུལ།",
      install: "ཁ་པར་ནང་འཇུག", attach_location: "ངའི་ས་གནས་སྦྲགས།",
      st_received: "འབྱོར་ཟིན།", st_routed: "བསྐུར་ཟིན།", st_acknowledged: "ལེན་ཟིན།",
      st_in_progress: "ལས་ཀ་བྱེད་བཞིན་པ།", st_resolved: "ཐག་གཅོད་ཟིན།", st_closed: "མཇུག་བསྡུས།",
      st_returned: "ཕྱིར་སློག", st_escalated: "གོང་རིམ་ལ་སྤྲད།", st_reopened: "བསྐྱར་དུ་ཁ་ཕྱེ།",
      st_merged: "མཉམ་སྡེབ།", st_pending: "གཏོང་རྒྱུ་སྒུག་བཞིན་པ།", st_failed: "གཏོང་མ་ཐུབ།",
      st_open: "བྱེད་བཞིན་པ།", st_done: "ལེགས་གྲུབ།", st_overdue: "དུས་ཡོལ།", st_cancelled: "མེད་པར་བཟོས།",
      c_dispute: "རྩོད་གཞི", c_grassland_boundary: "རྩྭ་ཐང་གི་ས་མཚམས", c_safety_hazard: "བདེ་འཇགས་ཀྱི་ཉེན་ཁ", c_weather_disaster: "རང་བྱུང་གནོད་འཚེ", c_house_collapse: "ཁང་པ་རྡིབ་པ", c_illness: "ན་ཚ", c_livestock: "ཕྱུགས་ཟོག", c_population_movement: "གཡོ་འགུལ་མི་འབོར", c_ecology: "སྐྱེ་ཁམས", c_livelihood: "འཚོ་བ", c_infrastructure: "གཞི་རྩའི་སྒྲིག་འཛུགས", c_policy: "སྲིད་ཇུས", c_suggestion: "བསམ་འཆར", c_other: "གཞན་དག",
    },
  };
  const CATEGORIES = ['dispute', 'grassland_boundary', 'safety_hazard', 'weather_disaster', 'house_collapse', 'illness', 'livestock', 'population_movement', 'ecology', 'livelihood', 'infrastructure', 'policy', 'suggestion', 'other'];
  // The console is for cadres who read Chinese; its Tibetan falls back to Chinese for missing words.
  const FALLBACK = "zh";
  const STORE_KEY = "lianhu.language";

  function current() {
    const chosen = localStorage.getItem(STORE_KEY);
    return chosen === "bo" || chosen === "zh" ? chosen : null;
  }

  const I18n = {
    language: current() || "zh",
    chosen: current() !== null,
    t(key) {
      const words = WORDS[I18n.language] || WORDS[FALLBACK];
      return words[key] ?? WORDS[FALLBACK][key] ?? key;
    },
    state(name) {
      return name ? I18n.t("st_" + name) : "";
    },
    category(name) {
      return name ? I18n.t("c_" + name) : "";
    },
    categories: CATEGORIES,
    set(language) {
      I18n.language = language === "bo" ? "bo" : "zh";
      I18n.chosen = true;
      localStorage.setItem(STORE_KEY, I18n.language);
      I18n.apply(document);
    },
    /* Every element with data-t gets its text; data-t-label / data-t-placeholder set attributes. */
    apply(root) {
      document.documentElement.lang = I18n.language === "bo" ? "bo" : "zh-Hans";
      root.querySelectorAll("[data-t]").forEach((el) => { el.textContent = I18n.t(el.dataset.t); });
      root.querySelectorAll("[data-t-label]").forEach((el) => el.setAttribute("aria-label", I18n.t(el.dataset.tLabel)));
      root.querySelectorAll("[data-t-placeholder]").forEach((el) => { el.placeholder = I18n.t(el.dataset.tPlaceholder); });
      document.dispatchEvent(new CustomEvent("languagechange"));
    },
    time(iso) {
      if (!iso) return "";
      const d = new Date(iso);
      const pad = (n) => String(n).padStart(2, "0");
      return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
    },
  };
  global.I18n = I18n;
})(window);
